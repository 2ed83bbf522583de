"""A gateway's Kubernetes objects: what they are, how they are locked down, and that they pass the
strict schemas (tests/sync/test_gateway_sync.py applies and prunes them)."""

from __future__ import annotations

import copy
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
