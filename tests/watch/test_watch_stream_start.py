"""Watch streams start from the resourceVersions of the LISTs the first full plan made: a start-up
LISTs each kind once, and what changes after those LISTs (the sync's own writes, hand edits made
before the streams open) still arrives as events."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from kubernetes import client

from meshc.commands.watch import compile_function
from meshc.load import SpecSource
from meshc.sync.engine import SyncReport, sync_once
from meshc.sync.kube_events import KubeEvents
from meshc.sync import kube_events
from meshc.sync import kubernetes as kubernetes_target
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Interrupted
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.routes import READ_METHODS
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until
from tests.watch.harness import ThreadedWatcher, matching, watching
from tests.watch.specs import NAMESPACE, SPEC_PATH, mesh_spec

NO_FULL_CHECK = 600.0   # the full drift check is not due during these tests


def _lists(kube_api: KubeAPIHandle) -> Counter[str]:
    """LISTs of the mesh by path (a plan's or a stream's own; watches are not counted)."""
    return Counter(r.path for r in kube_api.requests
                   if r.method in READ_METHODS and "labelSelector" in r.query and r.query.get("watch") != "true")


def _events(watcher: ThreadedWatcher) -> KubeEvents:
    return watcher.watcher.events["kubernetes"]


def _replicas(kube_api: KubeAPIHandle, name: str) -> int:
    deployment = kube_api.store_get("deployments", name, NAMESPACE)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


class EditAfterFirstSync:
    """sync_once, and right after the first one (its plan has LISTed, the streams are not open
    yet) a hand edit: what a stream started from the plan's versions must still see."""

    def __init__(self, edit: Any) -> None:
        self.edit = edit
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> SyncReport:
        report = sync_once(*args, **kwargs)
        self.calls += 1
        if self.calls == 1:
            self.edit()
        return report


def test_streams_start_from_the_first_plans_lists_and_still_see_a_hand_edit(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        events = _events(watcher)
        started = _lists(kube_api)
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            "svc-01", NAMESPACE, {"spec": {"replicas": 7}})
        drift = watcher.wait("drift", commit=mesh_repo.head_sha)
        after = _lists(kube_api)
        counts = events.from_plans, events.lists, events.relists, len(events.scopes)
    # The first sync's plan LISTed every managed kind once; no stream LISTed its kind again.
    assert started and set(started.values()) == {1}, started
    assert any("/deployments" in path for path in started)
    assert after == started, "the hand edit was corrected from its event, without a LIST"
    scopes = counts[-1]
    assert scopes >= 4 and counts == (scopes, 0, 0, scopes), counts
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [("update", f"apps/v1 Deployment {NAMESPACE}/svc-01")]
    assert _replicas(kube_api, "svc-01") == 1


def test_an_edit_and_a_deletion_between_the_plans_list_and_the_streams_start_are_corrected(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    def edit() -> None:
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            "svc-02", NAMESPACE, {"spec": {"replicas": 4}})
        client.CoreV1Api(kube_api.api_client()).delete_namespaced_config_map("svc-01-envoy", NAMESPACE)

    sync = EditAfterFirstSync(edit)
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK, sync_fn=sync) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        wanted = {("update", f"apps/v1 Deployment {NAMESPACE}/svc-02"), ("create", f"v1 ConfigMap {NAMESPACE}/svc-01-envoy")}

        def corrected() -> set[tuple[str, str]]:   # in one drift event or two
            return {(c["action"], c["key"]) for d in matching(watcher.events(), "drift", commit=mesh_repo.head_sha)
                    for c in d["changes"]}

        poll_until(lambda: corrected() >= wanted, timeout=30,
                   message=lambda: f"the edits made before the streams opened were not corrected: {corrected()}")
        events = _events(watcher)
        counts = events.from_plans, events.lists, len(events.scopes)
        lists = _lists(kube_api)
    assert corrected() == wanted
    assert kube_api.store_get("configmaps", "svc-01-envoy", NAMESPACE) is not None
    assert _replicas(kube_api, "svc-02") == 1
    assert counts == (counts[-1], 0, counts[-1]), f"found by the streams' events, not by LISTs of their own: {counts}"
    assert set(lists.values()) == {1}, lists


def test_a_stream_whose_plan_version_is_gone_lists_and_finds_what_it_missed(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    def edit_and_compact() -> None:
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            "svc-00", NAMESPACE, {"spec": {"replicas": 5}})
        kube_api.compact_history()   # the plan's versions, and the edit's event, are gone: 410

    expired = kube_api.expired_watches()
    sync = EditAfterFirstSync(edit_and_compact)
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK, sync_fn=sync) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        drift = watcher.wait("drift", commit=mesh_repo.head_sha)
        events = _events(watcher)
        scopes = len(events.scopes)
        poll_until(lambda: events.relists >= scopes, timeout=30, message="the streams did not LIST again")
        watcher.wait_streaming()
        counts, last_error = (events.from_plans, events.lists, events.relists), events.last_error
        lists = _lists(kube_api)
    assert [(c["action"], c["key"]) for c in drift["changes"]] == [("update", f"apps/v1 Deployment {NAMESPACE}/svc-00")]
    assert _replicas(kube_api, "svc-00") == 1
    assert kube_api.expired_watches() - expired >= scopes, "every stream's start was answered 410 Gone"
    assert counts == (scopes, scopes, scopes) and last_error is None, counts
    # each followed kind LISTed by the plan, then once more by its stream after the 410
    assert max(lists.values()) == 2 and sum(lists.values()) == len(lists) + scopes, lists


def test_without_drift_correction_the_streams_list_for_themselves(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    # The first sync applies (a new commit is always applied); a drift check's dry run corrects
    # nothing, so streams that start after one must LIST: here, streams gone (as after a failure
    # to open them), so the cluster is planned in full, dry, and the streams start again.
    with watching(mesh_repo.path, [kube_target], drift_correction=False) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        watcher.wait_streaming()
        events = _events(watcher)
        scopes = len(events.scopes)
        assert (events.from_plans, events.lists) == (scopes, 0)
        events.close()
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            "svc-01", NAMESPACE, {"spec": {"replicas": 3}})
        watcher.wait("drift", commit=mesh_repo.head_sha, corrected=False)
        poll_until(lambda: events.lists >= scopes, timeout=30, message="the streams did not start again")
        watcher.wait_streaming()
        counts = events.from_plans, events.lists, len(events.scopes)
    assert counts == (scopes, scopes, scopes), f"after the dry run each stream LISTed for itself: {counts}"
    assert _replicas(kube_api, "svc-01") == 3, "drift correction is off"


def test_a_full_plan_records_its_lists_versions_and_a_set_aside_one_only_its_finished_lists(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    diagnostics, bundle = compile_function()(SpecSource(SPEC_PATH, mesh_spec(3).encode()))
    assert bundle is not None, diagnostics
    sync_once(bundle, [kube_target])
    kube_target.take_list_versions()
    kube_target.plan(bundle)
    versions = kube_target.take_list_versions()
    assert kube_target.take_list_versions() == {}, "taken once"
    selector = next(iter(versions))[3]
    assert ("apps/v1", "Deployment", NAMESPACE, selector) in versions
    assert ("v1", "Namespace", None, selector) in versions
    assert all(version.isdigit() for version in versions.values())
    # One object a page: the Namespace LIST (one object) ends, the ServiceAccount LIST (one per
    # service) is set aside after its first page, and only the finished one is recorded.
    accounts = client.CoreV1Api(kube_api.api_client()).list_namespaced_service_account(NAMESPACE, label_selector=selector)
    assert len(accounts.items) >= 2
    monkeypatch.setattr(kubernetes_target, "LIST_PAGE", 1)
    asked = [0]

    def on_the_third_page() -> bool:
        asked[0] += 1
        return asked[0] >= 3

    with pytest.raises(Interrupted):
        kube_target.plan(bundle, interrupt=on_the_third_page)
    assert set(kube_target.take_list_versions()) == {("v1", "Namespace", None, selector)}


def test_memory_is_given_back_once_after_a_burst_of_events(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The streams start from the first plan's LISTs, made before the sync created every object:
    # they replay those creates (a burst), then nothing comes; memory is given back once.
    released: list[int] = []
    monkeypatch.setattr(kube_events, "BURST_EVENTS", 5)
    monkeypatch.setattr(kube_events, "QUIET", 0.3)
    monkeypatch.setattr(kube_events, "release_memory", lambda: released.append(1))
    with watching(mesh_repo.path, [kube_target], drift_interval=NO_FULL_CHECK) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        events = _events(watcher)
        poll_until(lambda: released, timeout=30, message="memory was not given back after the burst")
        replayed = events.events
        watcher.wait_passes(5)
        after = len(released), events.events
    assert replayed >= 5, "the sync's own creates were replayed as events"
    assert after == (1, replayed), "once per burst, and no event since"
