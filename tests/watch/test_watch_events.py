"""Drift found by Kubernetes watch streams: corrected without a full plan (no LIST of the mesh)."""

from __future__ import annotations

from kubernetes import client

from meshc.emit.naming import MESH_LABEL
from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.routes import READ_METHODS
from tests.support.gitrepo import GitRepo
from tests.watch.harness import watching
from tests.watch.specs import NAMESPACE, SPEC_PATH, mesh_spec

NO_FULL_CHECK = 600.0   # the full drift check is not due during these tests


def _full_lists(kube_api: KubeAPIHandle) -> list[str]:
    """LISTs of the mesh that are not a watch stream's own (a full plan would make them)."""
    return [r.path for r in kube_api.requests
            if r.method in READ_METHODS and "labelSelector" in r.query and r.query.get("watch") != "true"]


def _replicas(kube_api: KubeAPIHandle, name: str) -> int:
    deployment = kube_api.store_get("deployments", name, NAMESPACE)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def test_a_hand_edit_is_corrected_through_the_watch_stream(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                           kube_target: KubernetesTarget) -> None:
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        kube_api.reset_log()
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            "svc-01", NAMESPACE, {"spec": {"replicas": 7}})
        drift = watcher.wait("drift", commit=mesh_repo.head_sha)
        lists = _full_lists(kube_api)
    assert [(c["action"], c["key"], c["detail"]) for c in drift["changes"]] == [
        ("update", f"apps/v1 Deployment {NAMESPACE}/svc-01", "drift: spec.replicas")]
    assert _replicas(kube_api, "svc-01") == 1
    assert lists == [], "corrected from the event, not by a full plan"
    writes = [(r.method, r.path.rsplit("/", 2)[-2:], r.field_manager) for r in kube_api.writes()]
    assert writes[1:] == [("PATCH", ["deployments", "svc-01"], "meshc")], writes   # after the hand edit


def test_a_deleted_object_is_recreated_through_the_watch_stream(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                                kube_target: KubernetesTarget) -> None:
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        kube_api.reset_log()
        client.CoreV1Api(kube_api.api_client()).delete_namespaced_config_map("svc-02-envoy", NAMESPACE)
        drift = watcher.wait("drift", commit=mesh_repo.head_sha)
        lists = _full_lists(kube_api)
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [("create", f"v1 ConfigMap {NAMESPACE}/svc-02-envoy")]
    assert kube_api.store_get("configmaps", "svc-02-envoy", NAMESPACE) is not None
    assert lists == []


def test_an_object_labelled_into_the_mesh_by_hand_is_pruned(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                             kube_target: KubernetesTarget) -> None:
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        live = kube_api.store_get("configmaps", "svc-02-envoy", NAMESPACE)
        assert live is not None
        stray = {"metadata": {"name": "stray", "namespace": NAMESPACE, "labels": live["metadata"]["labels"]},
                 "data": {"k": "v"}}
        client.CoreV1Api(kube_api.api_client()).create_namespaced_config_map(NAMESPACE, stray)
        drift = watcher.wait("drift", commit=mesh_repo.head_sha)
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [("delete", f"v1 ConfigMap {NAMESPACE}/stray")]
    assert kube_api.store_get("configmaps", "stray", NAMESPACE) is None


def test_a_stream_too_old_to_resume_lists_again_and_finds_what_it_missed(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        events = watcher.watcher.events["kubernetes"]
        relists, expired = events.relists, kube_api.expired_watches()
        # The Deployment stream's resume is held while the edit is made and the history compacted,
        # so the edit is never streamed: only the LIST after the 410 can find it.
        resume = kube_api.hold_next(methods={"GET"}, path_contains="/deployments")
        try:
            kube_api.end_watches()
            assert resume.reached.wait(30), "the Deployment stream resumed"
            client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
                "svc-00", NAMESPACE, {"spec": {"replicas": 5}})
            kube_api.compact_history()
        finally:
            resume.release()
        drift = watcher.wait("drift", commit=mesh_repo.head_sha)
        assert events.relists > relists
        assert kube_api.expired_watches() > expired, "a resume was answered 410 Gone"
        assert events.last_error is None, "a 410 is no failure"
    gone = [r for r in kube_api.requests if "/deployments" in r.path and r.query.get("watch") == "true"]
    assert gone, "the stream tried to resume"
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [
        ("update", f"apps/v1 Deployment {NAMESPACE}/svc-00")]
    assert _replicas(kube_api, "svc-00") == 1


def test_a_commit_to_a_local_repository_is_seen_without_waiting_for_the_interval(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    # With an hour between polls, only the look at the branch's files can pick the commit up.
    with watching(mesh_repo.path, [kube_target], interval=3600.0) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "9.0.0"}), "Bump svc-01")
        applied = watcher.wait("applied", commit=change)
    assert applied["incremental"] is True
    deployment = kube_api.store_get("deployments", "svc-01", NAMESPACE)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":9.0.0")


def test_after_a_commit_adds_a_service_its_objects_are_watched_too(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(4), "Add svc-03")
        watcher.wait("applied", commit=change)
        watcher.wait_streaming()
        client.CoreV1Api(kube_api.api_client()).delete_namespaced_config_map("svc-03-envoy", NAMESPACE)
        drift = watcher.wait("drift", commit=change)
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [("create", f"v1 ConfigMap {NAMESPACE}/svc-03-envoy")]
    assert kube_api.store_get("configmaps", "svc-03-envoy", NAMESPACE) is not None


def test_after_the_mesh_is_renamed_its_objects_are_watched_under_the_new_name(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    """The streams select objects by the mesh's label: a renamed mesh (allowed, in the same
    namespace) must be streamed under its new name, or a hand edit of its objects goes unseen."""
    renamed = mesh_spec(3).replace("metadata:\n  name: demo\nspec:\n",
                                   f"metadata:\n  name: shop\nspec:\n  namespace: {NAMESPACE}\n")
    assert "name: shop" in renamed
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK, allow_mesh_rename=True,
                  prune_limit=100) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        rename = mesh_repo.commit_file(SPEC_PATH, renamed, "Rename the mesh")
        watcher.wait("applied", commit=rename)
        watcher.wait_streaming()
        assert kube_api.store_get("deployments", "svc-01", NAMESPACE)["metadata"]["labels"][MESH_LABEL] == "shop"
        kube_api.reset_log()
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            "svc-01", NAMESPACE, {"spec": {"replicas": 7}})
        drift = watcher.wait("drift", commit=rename)
        lists = _full_lists(kube_api)
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [
        ("update", f"apps/v1 Deployment {NAMESPACE}/svc-01")]
    assert _replicas(kube_api, "svc-01") == 1
    assert lists == [], "corrected from the event, not by a full plan"
