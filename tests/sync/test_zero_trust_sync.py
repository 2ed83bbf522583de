"""The zero-trust kinds (cert-manager Issuer and Certificates, NetworkPolicies) against the API
server double: created in apply order, updated, pruned in reverse, zero writes on a no-op."""

from __future__ import annotations

import pytest

from meshc.kinds import APPLY_ORDER
from meshc.sync.engine import sync_once
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Action
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.server import RequestRecord
from tests.sync.specs import NAMESPACE, bundle_of, chain_spec

pytestmark = pytest.mark.timeout(120)

PLURAL_KIND = {"namespaces": "Namespace", "serviceaccounts": "ServiceAccount", "configmaps": "ConfigMap",
               "services": "Service", "deployments": "Deployment", "issuers": "Issuer",
               "certificates": "Certificate", "networkpolicies": "NetworkPolicy"}


def kind_of(record: RequestRecord) -> str:
    parts = record.path.strip("/").split("/")
    plural = parts[-2] if len(parts) >= 2 and parts[-2] in PLURAL_KIND else parts[-1]
    return PLURAL_KIND[plural]


def name_of(record: RequestRecord) -> str:
    return record.path.rstrip("/").rsplit("/", 1)[1]


def strict(services: int, **options: object) -> dict[str, object]:
    spec = chain_spec(services, mtls="strict", **options)   # type: ignore[arg-type]
    return spec


def test_first_sync_creates_issuer_certificates_and_policies_in_order(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(strict(3))
    sync_once(bundle, [kube_target])
    writes = kube_api.writes()
    kinds = [kind_of(w) for w in writes]
    assert kinds.count("Issuer") == 1 and kinds.count("Certificate") == 3 and kinds.count("NetworkPolicy") == 3
    ranks = [APPLY_ORDER.index(k) for k in kinds]
    assert ranks == sorted(ranks)
    certificate = kube_api.store_get("certificates", "svc-001", NAMESPACE)
    assert certificate is not None
    assert certificate["spec"]["uris"] == [f"spiffe://cluster.local/ns/{NAMESPACE}/sa/svc-001"]
    assert certificate["metadata"]["generation"] == 1
    policy = kube_api.store_get("networkpolicies", "svc-001", NAMESPACE)
    assert policy is not None
    (callers, _stats) = policy["spec"]["ingress"]
    assert callers["from"] == [{"podSelector": {"matchLabels": {"meshc.dev/service": "svc-000"}}}]


def test_noop_sync_of_a_strict_mesh_makes_zero_writes(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(strict(4))
    sync_once(bundle, [kube_target])
    kube_api.reset_log()
    report = sync_once(bundle_of(strict(4), revision="c" * 40), [kube_target])
    assert kube_api.writes() == []
    assert report.write_requests == 0
    assert report.plans[0].count(Action.UNCHANGED) == len(list(bundle.kubernetes_objects()))


def test_a_new_caller_updates_only_the_callee_policy_and_the_callers_objects(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    spec = strict(3)
    sync_once(bundle_of(spec), [kube_target])
    kube_api.reset_log()
    services = spec["spec"]["services"]  # type: ignore[index]
    services[2]["upstreams"] = [{"service": "svc-000", "localPort": 9002}]   # svc-002 now calls svc-000
    sync_once(bundle_of(spec), [kube_target])
    changed = {(kind_of(w), name_of(w)) for w in kube_api.writes()}
    assert ("NetworkPolicy", "svc-000") in changed          # svc-000 admits a new caller
    assert ("NetworkPolicy", "svc-002") in changed          # svc-002 may reach a new callee
    assert not any(kind == "Certificate" for kind, _ in changed)   # identities did not change
    policy = kube_api.store_get("networkpolicies", "svc-000", NAMESPACE)
    assert policy is not None and policy["metadata"]["generation"] == 2


def test_certificate_settings_change_updates_every_certificate(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    spec = strict(2)
    sync_once(bundle_of(spec), [kube_target])
    kube_api.reset_log()
    spec["spec"]["security"]["certificates"] = {"duration": "48h", "renewBefore": "12h"}  # type: ignore[index]
    sync_once(bundle_of(spec), [kube_target])
    assert sorted((kind_of(w), name_of(w)) for w in kube_api.writes()) == [
        ("Certificate", "svc-000"), ("Certificate", "svc-001")]
    live = kube_api.store_get("certificates", "svc-000", NAMESPACE)
    assert live is not None and (live["spec"]["duration"], live["spec"]["renewBefore"]) == ("48h", "12h")


def test_removed_service_and_mtls_off_prune_the_new_kinds_in_reverse_order(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(strict(3)), [kube_target])
    kube_api.reset_log()
    sync_once(bundle_of(strict(3, drop=frozenset({"svc-002"}))), [kube_target])
    deleted = [(kind_of(w), name_of(w)) for w in kube_api.writes() if w.method == "DELETE"]
    assert ("Certificate", "svc-002") in deleted and ("NetworkPolicy", "svc-002") in deleted
    ranks = [APPLY_ORDER.index(kind) for kind, _ in deleted]
    assert ranks == sorted(ranks, reverse=True)

    kube_api.reset_log()
    sync_once(bundle_of(chain_spec(3, drop=frozenset({"svc-002"}))), [kube_target])   # mtls: off
    deleted = {(kind_of(w), name_of(w)) for w in kube_api.writes() if w.method == "DELETE"}
    assert deleted == {("Issuer", "meshc-ca"), ("Certificate", "svc-000"), ("Certificate", "svc-001"),
                       ("NetworkPolicy", "svc-000"), ("NetworkPolicy", "svc-001")}
    for plural in ("issuers", "certificates", "networkpolicies"):
        assert kube_api.double is not None and kube_api.double.store_list(plural, NAMESPACE) == []


def test_a_cluster_without_cert_manager_still_syncs_a_mesh_with_mtls_off(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """cert-manager's kinds are CRDs: where they are not installed, a plaintext mesh has none to list."""
    from tests.k8sapi import catalog

    monkeypatch.setattr(catalog, "RESOURCES", tuple(r for r in catalog.RESOURCES if r.group != catalog.CERT_MANAGER))
    report = sync_once(bundle_of(chain_spec(2)), [kube_target])
    assert report.write_requests == len(list(bundle_of(chain_spec(2)).kubernetes_objects()))
    kube_api.reset_log()
    with pytest.raises(Exception, match="does not serve cert-manager.io/v1"):
        sync_once(bundle_of(strict(2)), [kube_target])
    assert kube_api.writes() == []          # refused before anything was written


def test_a_kind_the_cluster_stopped_serving_is_not_taken_from_an_earlier_discovery(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process discovered the API while cert-manager was installed (the client library's
    discovery cache is a file per server address): a target opened after its removal still sees
    the cluster as it is, and syncs a plaintext mesh without listing Issuers."""
    from tests.k8sapi import catalog

    sync_once(bundle_of(strict(2)), [kube_target])   # discovers cert-manager's kinds
    monkeypatch.setattr(catalog, "RESOURCES", tuple(r for r in catalog.RESOURCES if r.group != catalog.CERT_MANAGER))
    later = KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig))
    try:
        report = sync_once(bundle_of(chain_spec(2)), [later], allow_prune_all=True)
    finally:
        later.close()
    assert report.results and report.results[0].applied
