"""The loop plans a new commit against the one it applied (only what differs), and keeps drift passes
from crowding out new commits: they are spaced to take at most a third of the loop's time, and one
that is planning gives way to a new commit."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from kubernetes import client

from meshc.bundle import Bundle
from meshc.sync.engine import SyncReport, sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Target
from meshc.sync.watch import DRIFT_SPACING
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until
from tests.watch.harness import RecordingSync, matching, watching
from tests.watch.specs import NAMESPACE, PREFIX, SPEC_PATH, mesh_spec
from tests.watch.test_watch_loop import deployment_image, etcd_value

LIST_DELAY = 0.25    # seconds added to every LIST of Deployments: a full plan of a "large" mesh


def test_a_new_commit_reads_only_the_changed_services_objects(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                               kube_target: KubernetesTarget,
                                                               etcd_server: EtcdServer,
                                                               etcd_target: EtcdTarget) -> None:
    with watching(mesh_repo.path, [kube_target, etcd_target], drift_interval=60.0) as watcher:
        first = watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        kube_api.reset_log()
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "3.0.0"}), "Bump svc-01")
        applied = watcher.wait("applied", commit=change)
    assert first["incremental"] is False and applied["incremental"] is True
    requests = [r for r in kube_api.requests if r.query.get("watch") != "true"]   # streams re-opened
    assert not [r for r in requests if "labelSelector" in r.query], "no LIST for a one-service commit"
    assert requests and all("/svc-01" in r.path for r in requests), [(r.method, r.path) for r in requests]
    assert [(r.method, r.path.rsplit("/", 2)[-2]) for r in kube_api.writes()] == [("PATCH", "deployments")]
    assert deployment_image(kube_api, "svc-01") == "ghcr.io/acme/svc-01:3.0.0"
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change


def test_after_a_failed_sync_the_next_plan_is_a_full_one(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                         kube_target: KubernetesTarget, etcd_server: EtcdServer,
                                                         etcd_target: EtcdTarget) -> None:
    with watching(mesh_repo.path, [kube_target, etcd_target], drift_interval=60.0, backoff_cap=0.5) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        kube_api.fail_next(2, status=500, methods={"PATCH"})
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-02": "3.0.0"}), "Bump svc-02")
        watcher.wait("failed", commit=change)
        applied = watcher.wait("applied", commit=change)
        again = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-02": "3.0.1"}), "Bump svc-02 again")
        next_applied = watcher.wait("applied", commit=again)
    assert applied["incremental"] is False          # after a failure: a full plan
    assert next_applied["incremental"] is True      # after a clean apply: incremental again
    assert deployment_image(kube_api, "svc-02") == "ghcr.io/acme/svc-02:3.0.1"


def test_an_unchanged_object_deleted_by_someone_is_restored_by_the_next_drift_pass(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    # the next drift pass is due 1.5 s after the first sync: the deletion and the commit come well before
    # (without watch streams, which would see the deletion at once)
    with watching(mesh_repo.path, [kube_target], drift_interval=1.5, watch_events=False) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        client.CoreV1Api(kube_api.api_client()).delete_namespaced_config_map("svc-02-envoy", NAMESPACE)
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "4.0.0"}), "Bump svc-01")
        applied = watcher.wait("applied", commit=change)
        drift = watcher.wait("drift", commit=change)
    assert applied["incremental"] is True
    assert all("svc-02" not in c["key"] for c in applied["changes"])   # not seen by the incremental plan
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [("create", f"v1 ConfigMap {NAMESPACE}/svc-02-envoy")]
    assert kube_api.store_get("configmaps", "svc-02-envoy", NAMESPACE) is not None


def test_drift_passes_take_at_most_a_third_of_the_loops_time(mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                             kube_target: KubernetesTarget) -> None:
    kube_api.delay_next(10_000, LIST_DELAY, methods={"GET"}, path_contains="/deployments")
    recording = RecordingSync()
    with watching(mesh_repo.path, [kube_target], interval=0.05, sync_fn=recording, watch_events=False) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        poll_until(lambda: len(recording.full()) >= 5, timeout=30, message="fewer than 5 drift passes")
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-00": "5.0.0"}), "Bump svc-00")
        applied = watcher.wait("applied", commit=change)
        passes = recording.full()
    # each full sync starts no sooner than DRIFT_SPACING times the previous one's duration after it ended
    for (start, end, _), (next_start, _, _) in itertools.pairwise(passes):
        assert next_start - end >= DRIFT_SPACING * (end - start) - 0.002, (start, end, next_start)
    busy = sum(end - start for start, end, _ in passes[:-1])
    assert busy / (passes[-1][0] - passes[0][0]) <= 1 / (1 + DRIFT_SPACING) + 0.02
    assert all(end - start >= LIST_DELAY for start, end, _ in passes)   # the delay really slowed them
    assert applied["incremental"] is True
    assert not matching(watcher.events(), "failed")


class CommitDuringDriftCheck:
    """sync_once; once armed, the first drift check it sees finds a new commit made as it starts."""

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo
        self.armed = False
        self.new_commit: str | None = None
        self.calls: list[tuple[str, bool, bool]] = []   # (revision, interruptible, incremental)
        self.committed_at_call = -1                      # index in `calls` of the drift check that committed

    def __call__(self, bundle: Bundle, targets: Sequence[Target], **options: Any) -> SyncReport:
        interruptible = options.get("interrupt") is not None
        self.calls.append((options["revision"], interruptible, options.get("previous") is not None))
        if interruptible and self.armed and self.new_commit is None:
            self.committed_at_call = len(self.calls) - 1
            self.new_commit = self.repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-02": "7.0.0"}), "Bump svc-02")
            time.sleep(0.1)   # longer than the interval: the drift check polls the branch again
        return sync_once(bundle, targets, **options)


def test_a_drift_check_gives_way_to_a_new_commit_but_not_twice_in_a_row(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    scripted = CommitDuringDriftCheck(mesh_repo)
    first = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target], interval=0.05, sync_fn=scripted, watch_events=False) as watcher:
        watcher.wait("applied", commit=first)
        scripted.armed = True
        poll_until(lambda: scripted.new_commit, timeout=10, message="no drift check ran")
        applied = watcher.wait("applied", commit=scripted.new_commit)
        start = scripted.committed_at_call                        # the drift check that gave way

        def drift_checks_after() -> list[bool]:
            return [interruptible for _, interruptible, _ in scripted.calls[start + 2:]]

        poll_until(lambda: len(drift_checks_after()) >= 2, timeout=20, message="fewer than 2 drift checks")
        set_aside = watcher.watcher.drift_checks_set_aside
        calls = list(scripted.calls)
    change = scripted.new_commit
    assert set_aside == 1 and applied["incremental"] is True
    assert calls[start] == (first, True, False)
    assert calls[start + 1] == (change, False, True)              # next: the new commit, incremental
    later = calls[start + 2:start + 4]
    assert later == [(change, False, False), (change, True, False)], calls   # one runs through, then as usual
    assert deployment_image(kube_api, "svc-02") == "ghcr.io/acme/svc-02:7.0.0"


def test_a_workload_commit_is_checked_incrementally_into_the_bundle_a_full_compile_makes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's compile checks a commit that changed only services' workload fields from the
    last compiled one (meshc.incremental) and anything else in full; either way the bundle is the
    one a full compile of that commit makes."""
    from meshc import pipeline
    from meshc.commands.watch import compile_function
    from meshc.defaults import ENVOY_CONFIG_DIR
    from meshc.load import SpecSource

    checked_in_full: list[str | None] = []
    full_check = pipeline.check

    def counted(source: SpecSource, *args: Any, **kwargs: Any) -> pipeline.Checked:
        checked_in_full.append(source.revision)
        return full_check(source, *args, **kwargs)

    monkeypatch.setattr(pipeline, "check", counted)
    compile_spec = compile_function()
    commits = [("r1", mesh_spec(3)), ("r2", mesh_spec(3, tags={"svc-01": "3.0.0"}, replicas={"svc-02": 4})),
               ("r3", mesh_spec(4, tags={"svc-01": "3.0.0"}, replicas={"svc-02": 4}))]
    for revision, text in commits:
        source = SpecSource(SPEC_PATH, text.encode(), revision)
        diagnostics, bundle = compile_spec(source)
        full = pipeline.compile(source, pipeline.BuildOptions(config_dir=ENVOY_CONFIG_DIR))
        assert bundle is not None and full.bundle is not None
        assert list(diagnostics) == list(full.diagnostics)
        assert dict(bundle.files) == dict(full.bundle.files), revision
    # Each commit's reference compile checks it in full once. The loop's compile checks r1 in
    # full (nothing before it) and r3 (a service added), not r2 (an image and a replica count).
    assert checked_in_full == ["r1", "r1", "r2", "r3", "r3"]
