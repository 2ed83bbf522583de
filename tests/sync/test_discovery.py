"""Kubernetes discovery reads only the API groups of the kinds a sync touches."""

from __future__ import annotations

from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle

NAMESPACE = "discovery-ns"


def discovery_paths(kube_api: KubeAPIHandle) -> list[str]:
    """GETs of discovery documents (no namespace or object in the path)."""
    return sorted(r.path for r in kube_api.requests if r.method == "GET" and "/namespaces/" not in r.path)


def test_a_core_kind_is_looked_for_in_the_core_group_only(kube_api: KubeAPIHandle,
                                                          kube_target: KubernetesTarget) -> None:
    """ConfigMap is `v1`: found under /api/v1, without reading every group that serves a `v1`
    (apps, networking.k8s.io, policy, rbac.authorization.k8s.io, cert-manager.io on the double;
    dozens on a real cluster)."""
    kube_api.reset_log()

    live = kube_target.get_objects([{"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "absent", "namespace": NAMESPACE}}])

    assert live == {f"v1 ConfigMap {NAMESPACE}/absent": None}
    assert discovery_paths(kube_api) == ["/api/v1", "/apis", "/version"]


def test_a_grouped_kind_reads_its_group_only(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    kube_api.reset_log()

    kube_target.get_objects([{"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": "absent", "namespace": NAMESPACE}},
                             {"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "absent", "namespace": NAMESPACE}}])

    assert discovery_paths(kube_api) == ["/api/v1", "/apis", "/apis/apps/v1", "/version"]
