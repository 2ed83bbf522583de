"""Online Boutique and Bookinfo as meshc builds them: the pods could start and find each other.

Every address variable an app is given names a listener its own sidecar has (read from the same
build's lds.yaml), the paths the apps write to are writable volumes, and the load generator, which
listens on nothing, gets neither a Service nor a probe that would restart it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from meshc.bundle import Bundle
from meshc.emit import naming
from tests.golden import build

Obj = dict[str, Any]
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def boutique() -> Bundle:
    return build("boutique")


@pytest.fixture(scope="module")
def bookinfo() -> Bundle:
    return build("bookinfo")


def deployments(bundle: Bundle) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in bundle.kubernetes_objects() if o["kind"] == "Deployment"}


def pod(deployment: Obj) -> Obj:
    spec: Obj = deployment["spec"]["template"]["spec"]
    return spec


def app(deployment: Obj) -> Obj:
    (found,) = [c for c in pod(deployment)["containers"] if c["name"] == naming.APP_CONTAINER]
    return found


def env(deployment: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in app(deployment).get("env", [])}


def outbound_ports(bundle: Bundle, service: str) -> set[int]:
    lds = json.loads(bundle.files[naming.envoy_path(service, naming.LDS_FILE)])
    return {r["address"]["socket_address"]["port_value"] for r in lds["resources"]
            if r["address"]["socket_address"]["address"] == LOOPBACK}


def writable_mounts(deployment: Obj) -> set[str]:
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    return {m["mountPath"] for m in app(deployment)["volumeMounts"]
            if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]}


def test_boutique_apps_get_their_address_variables_pointing_at_their_sidecars(boutique: Bundle) -> None:
    found = 0
    for name, deployment in deployments(boutique).items():
        listeners = outbound_ports(boutique, deployment["metadata"]["labels"][naming.SERVICE_LABEL])
        for variable, value in env(deployment).items():
            if variable.endswith("_ADDR") and variable != "SHOPPING_ASSISTANT_SERVICE_ADDR":
                host, port = value.rsplit(":", 1)
                assert host == LOOPBACK and int(port) in listeners, (name, variable, value)
                found += 1
    assert found == 16      # every *_ADDR of the upstream manifests but the undeployed assistant's


def test_checkout_reaches_two_services_of_one_port_on_two_local_ports(boutique: Bundle) -> None:
    variables = env(deployments(boutique)["checkoutservice"])
    assert variables["SHIPPING_SERVICE_ADDR"] != variables["PAYMENT_SERVICE_ADDR"]


def test_boutique_ports_probes_and_writable_paths(boutique: Bundle) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in boutique.kubernetes_objects()}
    assert objects[("Service", "frontend")]["spec"]["ports"][0]["port"] == 80
    assert objects[("Service", "emailservice")]["spec"]["ports"][0]["port"] == 5000
    frontend = app(objects[("Deployment", "frontend")])
    assert frontend["readinessProbe"]["httpGet"]["httpHeaders"] == [
        {"name": "Cookie", "value": "shop_session-id=x-readiness-probe"}]
    assert "replicas" not in objects[("Deployment", "frontend")]["spec"]
    assert ("HorizontalPodAutoscaler", "frontend") in objects and ("PodDisruptionBudget", "frontend") in objects
    assert writable_mounts(objects[("Deployment", "redis-cart")]) >= {"/data", "/tmp"}
    assert app(objects[("Deployment", "cartservice")])["readinessProbe"]["grpc"] == {"port": 7070}


def test_the_load_generator_listens_on_nothing_and_is_never_probed(boutique: Bundle) -> None:
    objects = {o["kind"]: o for o in boutique.documents(naming.kubernetes_path("loadgenerator"))}
    # its certificate lets it call the mTLS frontend; nothing may call it
    assert set(objects) == {"ServiceAccount", "ConfigMap", "Deployment", "Certificate", "NetworkPolicy"}
    inbound = {rule_port["port"] for rule in objects["NetworkPolicy"]["spec"].get("ingress", [])
               for rule_port in rule["ports"]}
    assert inbound == {15090}      # the stats port for scrapers only: no inbound port
    loadgen = deployments(boutique)["loadgenerator"]
    container = app(loadgen)
    assert "ports" not in container
    assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(container)
    init = {c["name"]: c for c in pod(loadgen)["initContainers"]}
    assert list(init) == [naming.SIDECAR_CONTAINER, "frontend-check"]   # the sidecar first: the check goes through it
    check_env = {e["name"]: e["value"] for e in init["frontend-check"]["env"]}
    assert check_env["FRONTEND_ADDR"] == env(loadgen)["FRONTEND_ADDR"]
    lds = json.loads(boutique.files[naming.envoy_path("loadgenerator", naming.LDS_FILE)])
    assert [r["name"] for r in lds["resources"]] == [naming.outbound_listener_name("frontend", 8089)]


def test_bookinfo_apps_find_their_upstreams_by_hostname_and_port(bookinfo: Bundle) -> None:
    checked = 0
    for name, deployment in deployments(bookinfo).items():
        listeners = outbound_ports(bookinfo, deployment["metadata"]["labels"][naming.SERVICE_LABEL])
        variables = env(deployment)
        for variable, host in variables.items():
            match = re.fullmatch(r"([A-Z]+)_HOSTNAME", variable)
            if match:
                assert host == LOOPBACK and int(variables[f"{match.group(1)}_SERVICE_PORT"]) in listeners, name
                checked += 1
    assert checked == 6   # productpage: details, reviews, ratings; reviews v1, v2, v3: ratings each


def test_bookinfo_ratings_v2_differs_from_v1_by_environment_only(bookinfo: Bundle) -> None:
    v1, v2 = deployments(bookinfo)["ratings-v1"], deployments(bookinfo)["ratings-v2"]
    assert app(v1)["image"] == app(v2)["image"]
    assert env(v2) == {**env(v1), "SERVICE_VERSION": "v2"}
    assert env(v2)["MONGO_DB_URL"].startswith(f"mongodb://{LOOPBACK}:")


def test_bookinfo_writable_paths(bookinfo: Bundle) -> None:
    found = deployments(bookinfo)
    assert writable_mounts(found["mongodb"]) >= {"/data/db", "/data/configdb", "/tmp"}
    assert app(found["mongodb"])["args"] == ["--ipv6", "--bind_ip_all"]
    assert pod(found["mongodb"])["securityContext"]["runAsUser"] == 999
    for version in ("v1", "v2", "v3"):
        assert writable_mounts(found[f"reviews-{version}"]) >= {"/opt/ibm/wlp/output", "/tmp"}
