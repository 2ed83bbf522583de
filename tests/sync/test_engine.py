"""sync_once over several real targets: plan everything first, write nothing unless all plans are made."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshc.emit.naming import MANIFEST_PATH
from meshc.sync.directory import DirectoryTarget
from meshc.sync.engine import PruneRefused, prune_refusals, sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Action, Change, Plan, TransientError
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer, mesh_value
from tests.sync.specs import PREFIX, bundle_of, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]


def store_revision(etcd: EtcdServer) -> int:
    return int(etcd.client().status()["header"]["revision"])


def etcd_value(etcd: EtcdServer, key: str) -> str | None:
    return mesh_value(etcd, PREFIX, key)


def test_revision_is_recorded_when_any_target_changes(kube_api: KubeAPIHandle, etcd_server: EtcdServer,
                                                      kube_target: KubernetesTarget, etcd_target: EtcdTarget) -> None:
    targets = [kube_target, etcd_target]
    sync_once(bundle_of(chain_spec(2)), targets, revision="a" * 40)
    # the proxy image is in the Deployments only, not in the etcd records
    spec = chain_spec(2)
    spec["spec"]["proxy"] = {"image": "envoyproxy/envoy:v1.33.0"}

    report = sync_once(bundle_of(spec), targets, revision="b" * 40)

    etcd_plan = report.plans[1]
    assert etcd_plan.empty and [c.key for c in etcd_plan.writes] == [f"{PREFIX}/revision"]
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == "b" * 40
    assert report.result("etcd") is not None and report.result("etcd").write_requests == 1  # type: ignore[union-attr]


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's (inode, mtime_ns): a file replaced by rename gets a new inode."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file()}


def test_a_noop_commit_updates_only_the_revision_records(kube_api: KubeAPIHandle, etcd_server: EtcdServer,
                                                         tmp_path: Path, kube_target: KubernetesTarget,
                                                         etcd_target: EtcdTarget) -> None:
    out = tmp_path / "out"
    targets = [DirectoryTarget(out), kube_target, etcd_target]
    sync_once(bundle_of(chain_spec(3), revision="a" * 40), targets, revision="a" * 40)
    kube_api.reset_log()
    files, etcd_before = files_of(out), store_revision(etcd_server)

    report = sync_once(bundle_of(chain_spec(3), revision="b" * 40), targets, revision="b" * 40)

    assert kube_api.writes() == [] and report.result("kubernetes") is None
    assert store_revision(etcd_server) == etcd_before + 1
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == "b" * 40
    after = files_of(out)
    assert after.keys() == files.keys() and {p for p in after if after[p] != files[p]} == {MANIFEST_PATH}
    assert not report.changed and report.write_requests == 2
    assert [(target, change.key) for target, change in report.recorded] == [
        ("directory", MANIFEST_PATH), ("etcd", f"{PREFIX}/revision")]


def test_the_same_commit_again_writes_nothing_on_any_target(kube_api: KubeAPIHandle, etcd_server: EtcdServer,
                                                            tmp_path: Path, kube_target: KubernetesTarget,
                                                            etcd_target: EtcdTarget) -> None:
    out = tmp_path / "out"
    targets = [DirectoryTarget(out), kube_target, etcd_target]
    sync_once(bundle_of(chain_spec(3), revision="b" * 40), targets, revision="b" * 40)
    kube_api.reset_log()
    files, etcd_before = files_of(out), store_revision(etcd_server)

    report = sync_once(bundle_of(chain_spec(3), revision="b" * 40), targets, revision="b" * 40)

    assert report.write_requests == 0 and report.results == []
    assert kube_api.writes() == []
    assert store_revision(etcd_server) == etcd_before
    assert files_of(out) == files


def test_nothing_is_written_when_one_target_cannot_be_planned(kube_api: KubeAPIHandle, etcd_server: EtcdServer,
                                                              tmp_path, kube_target: KubernetesTarget,
                                                              etcd_target: EtcdTarget) -> None:
    etcd_server.stop()
    with pytest.raises(TransientError):
        sync_once(bundle_of(chain_spec(2)), [DirectoryTarget(tmp_path / "out"), kube_target, etcd_target])
    assert kube_api.writes() == []
    assert not (tmp_path / "out").exists()


def test_a_refused_prune_on_one_target_writes_nothing_anywhere(kube_api: KubeAPIHandle, etcd_server: EtcdServer,
                                                               kube_target: KubernetesTarget,
                                                               etcd_target: EtcdTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [kube_target, etcd_target], revision="a" * 40)
    kube_api.reset_log()
    # one service less: fine for etcd (1 key) but more than 2 Kubernetes objects
    smaller = bundle_of(chain_spec(2, drop=frozenset({"svc-001"})))

    with pytest.raises(PruneRefused) as refused:
        sync_once(smaller, [etcd_target, kube_target], revision="b" * 40, prune_limit=2)

    assert [r.split(":")[0] for r in refused.value.reasons] == ["kubernetes"]
    assert kube_api.writes() == []
    assert etcd_value(etcd_server, f"{PREFIX}/services/svc-001") is not None
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == "a" * 40


def test_dry_run_plans_and_writes_nothing(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    report = sync_once(bundle_of(chain_spec(2)), [kube_target], dry_run=True)
    assert report.changed and report.plans[0].count(Action.CREATE) > 0
    assert report.results == [] and kube_api.writes() == []


def test_prune_refusals_count_content_deletes_only() -> None:
    deletes = tuple(Change(Action.DELETE, f"k{i}") for i in range(3))
    plan = Plan("etcd", deletes + (Change(Action.UPDATE, "rev", bookkeeping=True),))
    assert prune_refusals([plan], prune_limit=3) == []
    assert "--prune-limit 2" in prune_refusals([plan], prune_limit=2)[0]
    assert prune_refusals([plan], prune_limit=2, allow_prune_all=True) == []
    emptying = Plan("etcd", deletes, empties=True)
    assert "everything" in prune_refusals([emptying], prune_limit=100)[0]
