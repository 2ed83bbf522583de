"""A gateway's objects applied, left alone when unchanged, and pruned through the API server double."""

from __future__ import annotations

import pytest

from meshc.emit import naming
from meshc.sync.engine import sync_once
from meshc.sync.kubernetes import KubernetesTarget
from tests.emit.kubernetes.test_gateway import spec_with_gateway
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.sync.specs import NAMESPACE, bundle_of, chain_spec, service_name

GATEWAY_OBJECTS = {"serviceaccounts": "gateway-public", "configmaps": "gateway-public-envoy",
                   "services": "gateway-public", "deployments": "gateway-public"}


@pytest.mark.timeout(120)
def test_apply_then_prune_a_gateway(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(spec_with_gateway()), [kube_target])
    for plural, name in GATEWAY_OBJECTS.items():
        live = kube_api.store_get(plural, name, NAMESPACE)
        assert live is not None, plural
        assert live["metadata"]["labels"][naming.GATEWAY_LABEL] == "public"
    kube_api.reset_log()
    assert sync_once(bundle_of(spec_with_gateway()), [kube_target]).write_requests == 0   # a no-op stays one
    sync_once(bundle_of(chain_spec(2)), [kube_target])          # the gateway leaves the spec
    for plural, name in GATEWAY_OBJECTS.items():
        assert kube_api.store_get(plural, name, NAMESPACE) is None, plural
    assert kube_api.store_get("deployments", service_name(0), NAMESPACE) is not None
