"""A gateway's Kubernetes objects: what they are, how they are locked down, and that they pass the
strict schemas (tests/sync/test_gateway_sync.py applies and prunes them)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from meshc.emit import naming
from tests.emit.kubernetes import schemas
from tests.sync.specs import bundle_of, chain_spec, service_name

Obj = dict[str, Any]

GATEWAY = {"name": "public", "replicas": 2, "listeners": [
    {"port": 443, "hosts": ["shop.example.com"], "tls": {"secretName": "shop-tls"}},
    {"port": 80, "hosts": ["shop.example.com"], "redirectToHttps": True}],
    "routes": [{"match": {"path": {"prefix": "/"}}, "service": service_name(0)}]}


def spec_with_gateway(services: int = 2) -> dict[str, Any]:
    spec = chain_spec(services)
    spec["spec"]["gateways"] = [copy.deepcopy(GATEWAY)]
    return spec


def gateway_objects() -> dict[str, Obj]:
    bundle = bundle_of(spec_with_gateway())
    path = naming.kubernetes_path(naming.gateway_name("public"))
    assert path in bundle.files
    return {o["kind"]: o for o in bundle.kubernetes_objects() if o["metadata"]["name"].startswith("gateway-public")}


def test_gateway_objects_and_their_shape() -> None:
    objects = gateway_objects()
    assert set(objects) == {"ServiceAccount", "ConfigMap", "Service", "Deployment"}
    service = objects["Service"]["spec"]
    assert service["type"] == "LoadBalancer"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["ports"]] == [("https-443", 443, 443),
                                                                                 ("http-80", 80, 80)]
    assert service["selector"] == {naming.GATEWAY_LABEL: "public"}
    assert set(objects["ConfigMap"]["data"]) == {"bootstrap.yaml", "cds.yaml", "lds.yaml", "sds-tls-shop-tls.yaml"}
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    assert deployment["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()
    assert naming.SERVICE_LABEL not in deployment["template"]["metadata"]["labels"]   # no service selects it


def test_gateway_pod_is_hardened_like_a_sidecar() -> None:
    pod = gateway_objects()["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gateway-public"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in pod["securityContext"]["sysctls"]
    (envoy,) = pod["containers"]           # Envoy only: no application container
    assert envoy["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
    assert envoy["readinessProbe"]["httpGet"]["path"] == "/ready"
    mounts = {m["mountPath"]: m for m in envoy["volumeMounts"]}
    tls = mounts["/etc/meshc/gateway-tls/shop-tls"]
    assert tls["readOnly"] is True and "subPath" not in tls     # a subPath mount would never see a renewal
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[tls["name"]]["secret"] == {"secretName": "shop-tls"}


@pytest.mark.parametrize("version", schemas.oldest_and_newest())
def test_gateway_objects_are_schema_valid(version: str) -> None:
    problems = [p for obj in gateway_objects().values() for p in schemas.errors(obj, version)]
    assert problems == []


# --- under mTLS: the gateway is a mesh member -----------------------------------------------

def strict_objects() -> list[Obj]:
    spec = spec_with_gateway()
    spec["spec"]["security"] = {"mtls": "strict"}
    return list(bundle_of(spec).kubernetes_objects())


def test_gateway_gets_a_certificate_mounted_into_its_envoy() -> None:
    objects = strict_objects()
    (cert,) = [o for o in objects if o["kind"] == "Certificate" and o["metadata"]["name"] == "gateway-public"]
    assert cert["spec"]["uris"] == ["spiffe://cluster.local/ns/sync-ns/sa/gateway-public"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway-public"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == naming.DEFAULT_TLS_DIR]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["secret"]["secretName"] == cert["spec"]["secretName"]


def test_routed_service_admits_the_gateway_pods_and_its_identity() -> None:
    objects = strict_objects()
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == service_name(0)]
    sources = [s for rule in policy["spec"]["ingress"] for s in rule["from"]]
    assert {"podSelector": {"matchLabels": {naming.GATEWAY_LABEL: "public"}}} in sources
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "gateway-public-envoy"]
    assert {"sds-identity.yaml", "sds-trust.yaml", "sds-tls-shop-tls.yaml"} <= set(config["data"])
    cds = json.loads(config["data"]["cds.yaml"])
    (cluster,) = cds["resources"]
    san = cluster["transport_socket"]["typed_config"]["common_tls_context"]["combined_validation_context"]
    assert san["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": f"spiffe://cluster.local/ns/sync-ns/sa/{service_name(0)}"}}]


@pytest.mark.parametrize("version", schemas.oldest_and_newest())
def test_gateway_objects_under_mtls_are_schema_valid(version: str) -> None:
    objects = [o for o in strict_objects() if o["metadata"]["name"].startswith("gateway-public")]
    assert {o["kind"] for o in objects} >= {"Certificate", "Deployment"}
    assert [p for obj in objects for p in schemas.errors(obj, version)] == []


def test_build_cli_takes_the_gateway_tls_dir(tmp_path: Path) -> None:
    import subprocess
    import sys

    spec = tmp_path / "mesh.json"
    spec.write_text(json.dumps(spec_with_gateway()))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "meshc.cli", "build", str(spec), "-o", str(out),
                             "--gateway-tls-dir", "/srv/tls/{secret}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sds = json.loads((out / "envoy" / "gateway-public" / "sds-tls-shop-tls.yaml").read_text())
    (secret,) = sds["resources"]
    assert secret["tls_certificate"]["certificate_chain"] == {"filename": "/srv/tls/shop-tls/tls.crt"}
    assert secret["tls_certificate"]["watched_directory"] == {"path": "/srv/tls/shop-tls"}
