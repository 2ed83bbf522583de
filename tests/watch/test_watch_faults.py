"""The loop under faults: etcd down, the API failing, drift by others, prune guards."""

from __future__ import annotations

from kubernetes import client

from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.watch_lock import LeaderLock, etcd_client
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer, stored_key
from tests.support.gitrepo import GitRepo
from tests.watch.harness import matching, watching
from tests.watch.specs import MESH, NAMESPACE, PREFIX, SPEC_PATH, mesh_spec
from tests.watch.test_watch_loop import (
    deployment_image,
    etcd_store_revision,
    etcd_value,
)

BACKOFF_CAP = 0.8


def test_etcd_down_mid_watch_then_back_converges(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                  kube_target: KubernetesTarget, etcd_server: EtcdServer,
                                                  etcd_target: EtcdTarget) -> None:
    with watching(mesh_repo.path, [kube_target, etcd_target], backoff_cap=BACKOFF_CAP) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        etcd_server.stop()
        kube_api.reset_log()
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-02": "2.0.0"}), "Bump svc-02")
        watcher.wait("failed", commit=change, attempt=3)
        # Plans come first: with etcd unreadable, not even Kubernetes was written.
        assert kube_api.writes() == []
        etcd_server.start()
        applied = watcher.wait("applied", commit=change)
        failures = matching(watcher.events(), "failed", commit=change)
    assert all(f["transient"] for f in failures)
    # counted up from the first failure (a drift pass of the old commit may have failed first)
    attempts = [f["attempt"] for f in failures]
    assert attempts == list(range(attempts[0], attempts[0] + len(failures)))
    assert all(0 < f["retry_in_s"] <= BACKOFF_CAP for f in failures)
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change
    assert deployment_image(kube_api, "svc-02") == "ghcr.io/acme/svc-02:2.0.0"
    assert {c["key"] for c in applied["changes"]} >= {f"{PREFIX}/services/svc-02"}


def test_api_failing_with_500_and_409_for_a_while_converges(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                            kube_target: KubernetesTarget, etcd_server: EtcdServer,
                                                            etcd_target: EtcdTarget) -> None:
    with watching(mesh_repo.path, [kube_target, etcd_target], backoff_cap=BACKOFF_CAP) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        kube_api.fail_next(4, status=500, methods={"PATCH"})
        kube_api.fail_next(3, status=409, methods={"PATCH"})
        kube_api.fail_next(2, status=503, methods={"GET"}, path_contains="/deployments")
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "1.2.0", "svc-02": "1.2.0"}),
                                       "Bump svc-01 and svc-02")
        watcher.wait("applied", commit=change)
        failures = matching(watcher.events(), "failed", commit=change)
    injected = [r for r in kube_api.requests if r.injected]
    assert len(injected) == 9, injected
    assert failures and all(f["transient"] for f in failures)
    assert deployment_image(kube_api, "svc-01") == "ghcr.io/acme/svc-01:1.2.0"
    assert deployment_image(kube_api, "svc-02") == "ghcr.io/acme/svc-02:1.2.0"
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change


def test_drift_on_managed_objects_is_corrected(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                               kube_target: KubernetesTarget, etcd_server: EtcdServer,
                                               etcd_target: EtcdTarget) -> None:
    head = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target, etcd_target]) as watcher:
        watcher.wait("applied", commit=head)
        apps = client.AppsV1Api(kube_api.api_client())
        apps.patch_namespaced_deployment("svc-01", NAMESPACE, {"spec": {"replicas": 7}})
        etcd_server.client().put(stored_key(etcd_server, PREFIX, f"{PREFIX}/services/svc-02"), '{"edited": "by hand"}')
        drift = watcher.wait("drift", commit=head)
        watcher.wait_passes(2)
        events = watcher.events()
    assert drift["drifted"] >= 1
    corrected = {c["key"] for e in matching(events, "drift") for c in e["changes"]}
    assert f"{PREFIX}/services/svc-02" in corrected
    assert any("Deployment" in key and "svc-01" in key for key in corrected), corrected
    deployment = kube_api.store_get("deployments", "svc-01", NAMESPACE)
    assert deployment is not None and deployment["spec"]["replicas"] == 1
    assert '"edited"' not in (etcd_value(etcd_server, f"{PREFIX}/services/svc-02") or "")
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == head


def test_drift_is_only_reported_with_drift_correction_off(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                          kube_target: KubernetesTarget) -> None:
    head = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target], drift_correction=False) as watcher:
        watcher.wait("applied", commit=head)
        kube_api.reset_log()
        apps = client.AppsV1Api(kube_api.api_client())
        apps.patch_namespaced_deployment("svc-01", NAMESPACE, {"spec": {"replicas": 7}})
        drift = watcher.wait("drift", commit=head)
        watcher.wait_passes(3)
    assert drift["drifted"] == 1 and drift["corrected"] is False
    assert all(r.field_manager != "meshc" for r in kube_api.writes())
    deployment = kube_api.store_get("deployments", "svc-01", NAMESPACE)
    assert deployment is not None and deployment["spec"]["replicas"] == 7


def test_a_commit_over_the_prune_limit_is_refused(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                  kube_target: KubernetesTarget, etcd_server: EtcdServer,
                                                  etcd_target: EtcdTarget) -> None:
    first = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target, etcd_target], prune_limit=3) as watcher:
        watcher.wait("applied", commit=first)
        kube_api.reset_log()
        etcd_before = etcd_store_revision(etcd_server)
        shrink = mesh_repo.commit_file(SPEC_PATH, mesh_spec(1), "Remove svc-01 and svc-02")
        refused = watcher.wait("refused", commit=shrink)
        watcher.wait_passes(3)
        events = watcher.events()
    assert "prune-limit" in refused["message"]
    assert len(matching(events, "refused", commit=shrink)) == 1
    assert len(matching(events, "applying", commit=shrink)) == 1   # rechecks of a refused commit say nothing new
    assert kube_api.writes() == []
    assert etcd_store_revision(etcd_server) == etcd_before
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == first


def test_drift_interval_spaces_out_drift_checks_but_not_new_commits(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                                    kube_target: KubernetesTarget) -> None:
    # Without watch streams, drift is found only by the spaced-out full plans.
    with watching(mesh_repo.path, [kube_target], drift_interval=60.0, watch_events=False) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        kube_api.reset_log()
        apps = client.AppsV1Api(kube_api.api_client())
        apps.patch_namespaced_deployment("svc-01", NAMESPACE, {"spec": {"replicas": 7}})
        watcher.wait_passes(5)
        assert not matching(watcher.events(), "drift")
        assert not [r for r in kube_api.requests if "/deployments" in r.path and r.method == "GET"], \
            "no re-plan before the drift interval"
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "8.0.0"}), "Bump svc-01")
        watcher.wait("applied", commit=change)
    deployment = kube_api.store_get("deployments", "svc-01", NAMESPACE)
    assert deployment is not None and deployment["spec"]["replicas"] == 1, "the new commit's apply fixed it too"


def test_the_leader_survives_an_etcd_outage_longer_than_its_lease(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                                  kube_target: KubernetesTarget,
                                                                  etcd_server: EtcdServer,
                                                                  etcd_target: EtcdTarget) -> None:
    def lock_for(prefix: str) -> LeaderLock:
        return LeaderLock(etcd_client(etcd_server.url, timeout=1.0), f"{prefix}/lock", ttl=2)

    with watching(mesh_repo.path, [kube_target, etcd_target], lock_for=lock_for,
                  backoff_cap=BACKOFF_CAP) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        etcd_server.stop()
        watcher.wait("leader", leader=False)   # the lease could not be refreshed for a whole TTL
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-00": "6.0.0"}), "Bump svc-00")
        watcher.wait_passes(3)
        assert not matching(watcher.events(), "applying", commit=change), "no lock, no apply"
        etcd_server.start()
        watcher.wait("applied", commit=change)
        leaders = [e["leader"] for e in matching(watcher.events(), "leader")]
    assert leaders[0] is True and False in leaders and leaders[-1] is True
    assert deployment_image(kube_api, "svc-00") == "ghcr.io/acme/svc-00:6.0.0"
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change


def test_a_renamed_mesh_is_refused_unless_allowed(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                   kube_target: KubernetesTarget) -> None:
    first = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target]) as watcher:
        watcher.wait("applied", commit=first)
        kube_api.reset_log()
        rename = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3).replace(f"name: {MESH}\n", "name: shop\n"),
                                       "Rename the mesh")
        refused = watcher.wait("refused", commit=rename)
        assert kube_api.writes() == []        # nothing of the new mesh, nothing pruned
    assert "--allow-mesh-rename" in refused["message"]
    # a watcher started anew (no memory of the applied mesh) sees it from the parent commit,
    # and with the flag (and a prune limit above the old mesh's size) applies the new mesh and prunes the old one
    with watching(mesh_repo.path, [kube_target], allow_mesh_rename=True, prune_limit=100) as watcher:
        watcher.wait("applied", commit=rename)
    assert kube_api.store_get("deployments", "svc-00", "shop") is not None
    assert kube_api.store_get("deployments", "svc-00", NAMESPACE) is None
    assert kube_api.store_get("namespaces", NAMESPACE) is None
