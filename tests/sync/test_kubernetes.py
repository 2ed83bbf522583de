"""The Kubernetes target against the API server double: order, zero-write no-ops, prune guards, drift, faults."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from meshc.kinds import APPLY_ORDER
from meshc.sync.engine import PruneRefused, sync_once
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Action, PermanentError, TransientError
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.server import RequestRecord
from tests.sync.specs import NAMESPACE, bundle_of, chain_spec, service_name

pytestmark = pytest.mark.timeout(120)

_PLURAL_KIND = {"namespaces": "Namespace", "serviceaccounts": "ServiceAccount", "configmaps": "ConfigMap",
                "services": "Service", "deployments": "Deployment"}


def kind_of(record: RequestRecord) -> str:
    parts = record.path.strip("/").split("/")
    plural = parts[-2] if len(parts) >= 2 and parts[-2] in _PLURAL_KIND else parts[-1]
    return _PLURAL_KIND[plural]


def object_name(record: RequestRecord) -> str:
    return record.path.rstrip("/").rsplit("/", 1)[1]


def service_objects(kube_api: KubeAPIHandle, service: str) -> set[str]:
    """Names of the live objects of one service: `<kind>/<name>`."""
    assert kube_api.double is not None
    found = set()
    for plural, kind in _PLURAL_KIND.items():
        if kind == "Namespace":
            continue
        for obj in kube_api.double.store_list(plural, NAMESPACE):
            if obj["metadata"].get("labels", {}).get("meshc.dev/service") == service:
                found.add(f"{kind}/{obj['metadata']['name']}")
    return found


def test_first_sync_creates_everything_in_kind_order(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(chain_spec(3))
    report = sync_once(bundle, [kube_target])

    writes = kube_api.writes()
    desired = list(bundle.kubernetes_objects())
    assert len(writes) == len(desired) == report.write_requests
    assert {w.method for w in writes} == {"PATCH"}
    assert {w.content_type.split(";")[0] for w in writes} == {"application/apply-patch+yaml"}
    assert {(w.field_manager, w.query.get("force")) for w in writes} == {("meshc", "true")}
    ranks = [APPLY_ORDER.index(kind_of(w)) for w in writes]
    assert ranks == sorted(ranks), [kind_of(w) for w in writes]
    assert kube_api.store_get("deployments", service_name(1), NAMESPACE) is not None
    assert kube_api.store_get("namespaces", NAMESPACE) is not None


def test_noop_sync_makes_zero_writes(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(chain_spec(5))
    sync_once(bundle, [kube_target])
    kube_api.reset_log()

    report = sync_once(bundle_of(chain_spec(5), revision="b" * 40), [kube_target])

    assert kube_api.writes() == []
    assert {r.method for r in kube_api.requests} <= {"GET"}
    assert report.write_requests == 0 and not report.changed
    assert report.plans[0].count(Action.UNCHANGED) == len(list(bundle.kubernetes_objects()))


def test_one_service_change_in_100_service_mesh_writes_only_its_objects(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(100)), [kube_target])
    kube_api.reset_log()

    report = sync_once(bundle_of(chain_spec(100, images={"svc-042": "registry.example/svc-042:2.0"})), [kube_target])

    writes = kube_api.writes()
    assert [(w.method, kind_of(w), object_name(w)) for w in writes] == [("PATCH", "Deployment", "svc-042")]
    assert report.write_requests == 1
    live = kube_api.store_get("deployments", "svc-042", NAMESPACE)
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/svc-042:2.0"


def test_removed_service_is_pruned_in_reverse_kind_order(kube_api: KubeAPIHandle,
                                                         kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(5)), [kube_target])
    before = service_objects(kube_api, "svc-004")
    assert before
    kube_api.reset_log()

    report = sync_once(bundle_of(chain_spec(5, drop=frozenset({"svc-004"}))), [kube_target])

    deletes = [w for w in kube_api.writes() if w.method == "DELETE"]
    assert {f"{kind_of(w)}/{object_name(w)}" for w in deletes} == before
    ranks = [APPLY_ORDER.index(kind_of(w)) for w in deletes]
    assert ranks == sorted(ranks, reverse=True)
    assert service_objects(kube_api, "svc-004") == set()
    # svc-003 lost its upstream: only its own objects changed besides the prune
    patched = {object_name(w) for w in kube_api.writes() if w.method == "PATCH"}
    assert patched and all(name.startswith("svc-003") for name in patched), patched
    assert report.result("kubernetes") is not None


def test_a_spec_removing_every_service_is_refused_without_allow_prune_all(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [kube_target])
    kube_api.reset_log()
    replaced = chain_spec(2)
    for entry in replaced["spec"]["services"]:
        entry["name"] = "new-" + entry["name"]
        for upstream in entry.get("upstreams", []):
            upstream["service"] = "new-" + upstream["service"]
    bundle = bundle_of(replaced)

    with pytest.raises(PruneRefused) as refused:
        sync_once(bundle, [kube_target], prune_limit=100)
    assert "everything" in str(refused.value) and "--allow-prune-all" in str(refused.value)
    assert kube_api.writes() == []

    sync_once(bundle, [kube_target], allow_prune_all=True)
    assert service_objects(kube_api, "svc-000") == set()
    assert service_objects(kube_api, "new-svc-000")


def test_prune_limit_refuses_big_deletes_and_writes_nothing(kube_api: KubeAPIHandle,
                                                          kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(6)), [kube_target])
    kube_api.reset_log()
    smaller = bundle_of(chain_spec(6, drop=frozenset({"svc-003", "svc-004", "svc-005"})))

    with pytest.raises(PruneRefused) as refused:
        sync_once(smaller, [kube_target], prune_limit=5)
    assert "--prune-limit 5" in str(refused.value)
    assert kube_api.writes() == []

    report = sync_once(smaller, [kube_target], prune_limit=20)
    assert report.plans[0].count(Action.DELETE) > 5
    assert service_objects(kube_api, "svc-005") == set()


def test_objects_without_this_meshs_labels_are_never_pruned(kube_api: KubeAPIHandle,
                                                            kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [kube_target])
    core = client.CoreV1Api(kube_api.api_client())
    core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "hand-made"}, "data": {"a": "b"}})
    core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "other-mesh", "labels": {
        "app.kubernetes.io/managed-by": "meshc", "meshc.dev/mesh": "other"}}})

    plan = kube_target.plan(bundle_of(chain_spec(2)))
    sync_once(bundle_of(chain_spec(1)), [kube_target])

    assert plan.deletes == ()
    assert kube_api.store_get("configmaps", "hand-made", NAMESPACE) is not None
    assert kube_api.store_get("configmaps", "other-mesh", NAMESPACE) is not None
    assert service_objects(kube_api, "svc-001") == set()


def test_prune_rechecks_the_live_object_before_deleting(kube_api: KubeAPIHandle,
                                                        kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [kube_target])
    smaller = bundle_of(chain_spec(1))
    plan = kube_target.plan(smaller)
    assert any(c.key == f"v1 ConfigMap {NAMESPACE}/svc-001-envoy" for c in plan.deletes)
    # between plan and apply someone takes the ConfigMap over (drops meshc's labels)
    core = client.CoreV1Api(kube_api.api_client())
    core.patch_namespaced_config_map("svc-001-envoy", NAMESPACE, [
        {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}])

    result = kube_target.apply(plan, smaller)

    assert kube_api.store_get("configmaps", "svc-001-envoy", NAMESPACE) is not None
    assert all("svc-001-envoy" not in c.key for c in result.applied)
    assert kube_api.store_get("deployments", "svc-001", NAMESPACE) is None


def test_drift_from_another_field_manager_is_detected_and_corrected(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(chain_spec(3))
    sync_once(bundle, [kube_target])
    apps = client.AppsV1Api(kube_api.api_client())
    apps.patch_namespaced_deployment("svc-001", NAMESPACE, {"spec": {"replicas": 7}}, field_manager="kubectl-edit")
    kube_api.reset_log()

    report = sync_once(bundle, [kube_target])

    [change] = report.plans[0].content_writes
    assert (change.action, change.key) == (Action.UPDATE, f"apps/v1 Deployment {NAMESPACE}/svc-001")
    assert change.detail == "drift: spec.replicas"
    assert [(w.method, object_name(w)) for w in kube_api.writes()] == [("PATCH", "svc-001")]
    live = kube_api.store_get("deployments", "svc-001", NAMESPACE)
    assert live is not None and live["spec"]["replicas"] == 1
    kube_api.reset_log()
    assert sync_once(bundle, [kube_target]).write_requests == 0
    assert kube_api.writes() == []


def test_drift_in_envoy_config_map_is_detected(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(chain_spec(2))
    sync_once(bundle, [kube_target])
    core = client.CoreV1Api(kube_api.api_client())
    core.patch_namespaced_config_map("svc-000-envoy", NAMESPACE, {"data": {"cds.yaml": "{}"}},
                                     field_manager="someone")

    plan = kube_target.plan(bundle)

    assert [(c.key, c.detail) for c in plan.content_writes] == [
        (f"v1 ConfigMap {NAMESPACE}/svc-000-envoy", "drift: data.cds.yaml")]
    assert KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig), detect_drift=False).plan(bundle).empty


@pytest.mark.parametrize("status", [500, 409, 503])
def test_api_failing_for_a_while_raises_transient_then_converges(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget, status: int) -> None:
    bundle = bundle_of(chain_spec(4))
    kube_api.fail_next(3, status=status, methods={"PATCH"}, path_contains="/configmaps/")

    with pytest.raises(TransientError) as failure:
        sync_once(bundle, [kube_target])
    assert str(status) in str(failure.value)
    assert failure.value.partial is not None and failure.value.partial.applied  # Namespace, ServiceAccounts
    assert kube_api.store_get("deployments", "svc-000", NAMESPACE) is None    # stopped before later kinds

    report = sync_once(bundle, [kube_target])
    assert kube_api.store_get("deployments", "svc-003", NAMESPACE) is not None
    assert report.plans[0].count(Action.UNCHANGED) > 0
    kube_api.reset_log()
    assert sync_once(bundle, [kube_target]).write_requests == 0 and kube_api.writes() == []


@pytest.mark.parametrize("path", ["/apis", "/api/v1", "/configmaps"])
def test_an_api_that_does_not_answer_is_a_transient_failure_not_a_hang(
        kube_api: KubeAPIHandle, path: str) -> None:
    """Discovery (/apis, /api/v1) is read with the client's own requests, which name no timeout:
    they get the target's, as every other request does (the client retries a GET that timed out
    twice: every try is slow here)."""
    target = KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig), request_timeout=0.3)
    kube_api.delay_next(5, seconds=1.5, path_contains=path)
    try:
        with pytest.raises(TransientError) as failure:
            sync_once(bundle_of(chain_spec(1)), [target])
        assert "timed out" in str(failure.value).lower()
    finally:
        target.close()


def test_discovery_failing_twice_in_a_row_is_transient_and_the_same_target_recovers(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    """A 404 for a group's kinds makes the client discover the API again; a failure of that too
    left its cache unreadable (KeyError 'resources' from inside the client), for good."""
    bundle = bundle_of(chain_spec(2))
    kube_target.resource("v1", "Namespace")    # the API discovered: what follows is a re-discovery
    kube_api.fail_next(1, status=404, methods={"GET"}, path_contains="/apis/cert-manager.io/v1")
    kube_api.fail_next(1, status=404, methods={"GET"}, path_contains="/version")
    with pytest.raises(TransientError, match="discover cert-manager.io/v1"):
        sync_once(bundle, [kube_target])
    sync_once(bundle, [kube_target])      # the same target, as watch keeps it
    assert kube_api.store_get("deployments", "svc-001", NAMESPACE) is not None


@pytest.mark.parametrize("served", [False, True])
def test_an_answer_cut_off_mid_body_is_transient_and_the_next_sync_converges(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget, served: bool) -> None:
    """The connection closes half-way through an answer: before the request reached the store, or
    after it was carried out (the change is made; the client never hears of it)."""
    bundle = bundle_of(chain_spec(2))
    kube_api.cut_next(1, methods={"PATCH"}, path_contains="/configmaps/", served=served)
    with pytest.raises(TransientError):
        sync_once(bundle, [kube_target])
    sync_once(bundle, [kube_target])
    assert kube_api.store_get("deployments", "svc-001", NAMESPACE) is not None
    kube_api.reset_log()
    assert sync_once(bundle, [kube_target]).write_requests == 0 and kube_api.writes() == []


def test_failing_list_writes_nothing(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    kube_api.fail_next(1, status=500, methods={"GET"}, path_contains="/deployments")
    with pytest.raises(TransientError):
        sync_once(bundle_of(chain_spec(2)), [kube_target])
    assert kube_api.writes() == []


def test_forbidden_is_permanent_with_a_clear_message_and_no_credentials(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    kube_api.fail_next(1, status=403, methods={"PATCH"}, message='namespaces "sync-ns" is forbidden: User "ci" cannot patch')
    with pytest.raises(PermanentError) as failure:
        sync_once(bundle_of(chain_spec(1)), [kube_target])
    text = str(failure.value)
    assert "not allowed to apply v1 Namespace sync-ns" in text and "forbidden" in text
    assert "test-double-token" not in text and "Authorization" not in text


def test_unreachable_api_is_transient(tmp_path: Any) -> None:
    from tests.k8sapi.server import kubeconfig_text
    from tests.support.ports import free_port

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(f"http://127.0.0.1:{free_port()}"))
    target = KubernetesTarget.from_kubeconfig(str(kubeconfig), request_timeout=2.0)
    with pytest.raises(TransientError) as failure:
        target.plan(bundle_of(chain_spec(1)))
    assert "kubernetes: cannot" in str(failure.value)


def test_missing_kubeconfig_is_permanent(tmp_path: Any) -> None:
    with pytest.raises(PermanentError, match="cannot load kubeconfig"):
        KubernetesTarget.from_kubeconfig(str(tmp_path / "absent"))


def test_moving_the_mesh_to_another_namespace_is_a_rename(kube_api: KubeAPIHandle,
                                                         kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(1)), [kube_target])
    kube_api.reset_log()
    moved = bundle_of(chain_spec(1, namespace="sync-moved"))

    plan = kube_target.plan(moved)
    assert [str(m) for m in plan.applied_meshes] == [f"sync (namespace {NAMESPACE})"]
    assert plan.deletes == ()        # the old namespace is pruned as a rename, never by the plan itself
    with pytest.raises(PruneRefused, match="--allow-mesh-rename"):
        sync_once(moved, [kube_target], prune_limit=100, allow_prune_all=True)
    assert kube_api.writes() == []

    sync_once(moved, [kube_target], allow_mesh_rename=True)
    assert kube_api.store_get("deployments", "svc-000", "sync-moved") is not None
    deleted = [w for w in kube_api.writes() if w.method == "DELETE"]
    assert [kind_of(w) for w in deleted][-1] == "Namespace"     # the old namespace goes last