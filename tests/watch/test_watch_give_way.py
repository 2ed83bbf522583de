"""A drift check's full plan gives way to a new commit while it compares, and at once when a local
repository's branch moved (not only at the next poll of the interval)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from meshc.bundle import Bundle
from meshc.commands.watch import compile_function
from meshc.load import SpecSource
from meshc.sync import kubernetes as kubernetes_target
from meshc.sync.engine import SyncReport, sync_once
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Interrupted, Target
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.routes import READ_METHODS
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until
from tests.watch.harness import watching
from tests.watch.specs import SPEC_PATH, mesh_spec


def _list_count(kube_api: KubeAPIHandle) -> int:
    return sum(1 for r in kube_api.requests if r.method in READ_METHODS and "labelSelector" in r.query)


def test_a_full_plan_is_set_aside_while_it_compares(kube_api: KubeAPIHandle, kube_target: KubernetesTarget,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan compares each page of a LIST as it arrives; it asks whether to give way before each
    page and every COMPARE_CHUNK comparisons, so a long comparison can hear it too."""
    diagnostics, bundle = compile_function()(SpecSource(SPEC_PATH, mesh_spec(3).encode()))
    assert bundle is not None, diagnostics
    sync_once(bundle, [kube_target])
    kube_api.reset_log()
    kube_target.plan(bundle)
    every_list = _list_count(kube_api)
    monkeypatch.setattr(kubernetes_target, "COMPARE_CHUNK", 5)
    kube_api.reset_log()
    # the LISTs' own questions (before each page) answered "go on": only the comparison's remain
    listing = kube_target._list
    monkeypatch.setattr(kube_target, "_list", lambda resource, namespace, selector, interrupt=None:
                        listing(resource, namespace, selector, None))
    with pytest.raises(Interrupted, match="comparing"):
        kube_target.plan(bundle, interrupt=lambda: True)
    assert 0 < _list_count(kube_api) <= every_list and kube_api.writes() == []


class CommitAsDriftCheckStarts:
    """sync_once; once armed, the first drift check it sees finds a new commit made just before it
    plans (well within the interval, so only the look at the branch's files can notice it)."""

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo
        self.armed = False
        self.new_commit: str | None = None

    def __call__(self, bundle: Bundle, targets: Sequence[Target], **options: Any) -> SyncReport:
        if options.get("interrupt") is not None and self.armed and self.new_commit is None:
            self.new_commit = self.repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "5.0.0"}), "Bump svc-01")
        return sync_once(bundle, targets, **options)


def test_a_drift_check_gives_way_to_a_local_commit_before_the_next_poll(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    scripted = CommitAsDriftCheckStarts(mesh_repo)
    with watching(mesh_repo.path, [kube_target], interval=2.0, sync_fn=scripted, watch_events=False) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        scripted.armed = True
        poll_until(lambda: scripted.new_commit, timeout=30, message="no drift check ran")
        applied = watcher.wait("applied", commit=scripted.new_commit)
        set_aside = watcher.watcher.drift_checks_set_aside
    assert set_aside == 1, "the drift check ran through instead of giving way"
    assert applied["incremental"] is True
