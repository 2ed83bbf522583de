"""The sync loop against real targets: first sync, no-op commits (revision records only), invalid commits, one-service changes."""

from __future__ import annotations

from pathlib import Path

import orjson

from meshc.emit.naming import MANIFEST_PATH
from meshc.sync.directory import DirectoryTarget
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer, mesh_value
from tests.support.gitrepo import GitRepo
from tests.watch.harness import watching
from tests.watch.specs import BROKEN_SPEC, NAMESPACE, PREFIX, SPEC_PATH, mesh_spec


def etcd_value(etcd: EtcdServer, key: str) -> str | None:
    return mesh_value(etcd, PREFIX, key)


def etcd_store_revision(etcd: EtcdServer) -> int:
    return int(etcd.client().status()["header"]["revision"])


def deployment_image(kube_api: KubeAPIHandle, name: str) -> str:
    deployment = kube_api.store_get("deployments", name, NAMESPACE)
    assert deployment is not None, f"no Deployment {name}"
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] != "envoy"))


def test_first_sync_reaches_every_target(mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget,
                                          etcd_server: EtcdServer, etcd_target: EtcdTarget,
                                          dir_target: DirectoryTarget) -> None:
    head = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target, etcd_target, dir_target]) as watcher:
        applied = watcher.wait("applied", commit=head)
    assert applied["subject"] == "Add the demo mesh"
    assert applied["writes"] > 0 and set(applied["targets"]) == {"kubernetes", "etcd", "directory"}
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == head
    record = orjson.loads(etcd_value(etcd_server, f"{PREFIX}/services/svc-01") or "null")
    assert record["versions"][0]["image"] == "ghcr.io/acme/svc-01:1.0.0"
    assert deployment_image(kube_api, "svc-02") == "ghcr.io/acme/svc-02:1.0.0"
    assert (dir_target.root / "envoy" / "svc-00" / "cds.yaml").is_file()
    managers = {r.field_manager for r in kube_api.writes()}
    assert managers == {"meshc"}


def files_of(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file's (inode, mtime_ns): a file replaced by rename gets a new inode."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_no_op_commit_records_its_revision_and_writes_nothing_else(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget, etcd_server: EtcdServer,
        etcd_target: EtcdTarget, dir_target: DirectoryTarget) -> None:
    manifest = dir_target.root / MANIFEST_PATH
    with watching(mesh_repo.path, [kube_target, etcd_target, dir_target]) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        kube_api.reset_log()
        etcd_before = etcd_store_revision(etcd_server)
        files_before = files_of(dir_target.root)
        empty = mesh_repo.commit_empty("An empty commit")
        noop = watcher.wait("noop", commit=empty)
        etcd_after_empty = etcd_store_revision(etcd_server)
        files_after_empty = files_of(dir_target.root)
        comment_only = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, comment="only a comment changed"), "Reword")
        reworded = watcher.wait("noop", commit=comment_only)
        etcd_after_comment = etcd_store_revision(etcd_server)
        files_after_comment = files_of(dir_target.root)
        watcher.wait_passes(4)    # drift passes of the same commit: nothing at all
        etcd_at_end = etcd_store_revision(etcd_server)
        files_at_end = files_of(dir_target.root)
    assert kube_api.writes() == []
    for event in (noop, reworded):
        assert event["changes"] == [] and event["writes"] == 2
        assert {t: c["writes"] for t, c in event["targets"].items()} == {"kubernetes": 0, "etcd": 1, "directory": 1}
        assert event["recorded"] == [{"target": "etcd", "key": f"{PREFIX}/revision"},
                                     {"target": "directory", "key": MANIFEST_PATH}]
        assert "nothing to change; revision recorded in etcd" in event["message"]
    # one etcd transaction per commit, and only manifest.json rewritten in the directory
    assert etcd_after_empty == etcd_before + 1 and etcd_after_comment == etcd_after_empty + 1
    for before, after in ((files_before, files_after_empty), (files_after_empty, files_after_comment)):
        assert after.keys() == before.keys() and {p for p in after if after[p] != before[p]} == {manifest}
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == comment_only
    assert orjson.loads(manifest.read_bytes())["source"]["revision"] == comment_only
    assert etcd_at_end == etcd_after_comment and files_at_end == files_after_comment


def test_invalid_commit_writes_nothing_and_the_next_valid_one_applies(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget, etcd_server: EtcdServer,
        etcd_target: EtcdTarget) -> None:
    first = mesh_repo.head_sha
    with watching(mesh_repo.path, [kube_target, etcd_target]) as watcher:
        watcher.wait("applied", commit=first)
        kube_api.reset_log()
        etcd_before = etcd_store_revision(etcd_server)
        broken = mesh_repo.commit_file(SPEC_PATH, BROKEN_SPEC, "Break the spec")
        invalid = watcher.wait("invalid", commit=broken)
        assert invalid["kept"] == first[:7]
        assert {d["code"] for d in invalid["diagnostics"]} and all(d["line"] for d in invalid["diagnostics"])
        watcher.wait_passes(3)  # more passes on the broken head: still nothing written, reported once
        assert kube_api.writes() == [] and etcd_store_revision(etcd_server) == etcd_before
        fixed = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "1.1.0"}), "Bump svc-01")
        applied = watcher.wait("applied", commit=fixed)
        events = watcher.events()
    writes = kube_api.writes()
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == fixed
    assert deployment_image(kube_api, "svc-01") == "ghcr.io/acme/svc-01:1.1.0"
    assert len([e for e in events if e["event"] == "invalid"]) == 1
    # Only svc-01's objects changed (its Deployment; its record in etcd).
    changed = {c["key"] for c in applied["changes"]}
    assert changed and all("svc-01" in key for key in changed), changed
    assert writes and all("svc-01" in r.path for r in writes), [r.path for r in writes]
    assert etcd_store_revision(etcd_server) == etcd_before + 1  # one transaction: the fix


def test_in_a_100_service_mesh_a_change_touches_one_service_and_a_removal_is_pruned(
        git_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget, etcd_server: EtcdServer,
        etcd_target: EtcdTarget) -> None:
    git_repo.commit_file(SPEC_PATH, mesh_spec(100), "A 100-service mesh")
    with watching(git_repo.path, [kube_target, etcd_target]) as watcher:
        watcher.wait("applied", commit=git_repo.head_sha, timeout=60)
        kube_api.reset_log()
        before = etcd_store_revision(etcd_server)
        change = git_repo.commit_file(SPEC_PATH, mesh_spec(100, tags={"svc-42": "2.0.0"}), "Bump svc-42")
        applied = watcher.wait("applied", commit=change, timeout=60)
        change_writes = kube_api.writes()
        change_transactions = etcd_store_revision(etcd_server) - before
        kube_api.reset_log()
        # svc-99 is the last one: removing it keeps every other service's spec byte-identical.
        removal = git_repo.commit_file(SPEC_PATH, mesh_spec(99, tags={"svc-42": "2.0.0"}), "Remove svc-99")
        pruned = watcher.wait("applied", commit=removal, timeout=60)
    assert change_writes and all("/svc-42" in r.path for r in change_writes), [r.path for r in change_writes]
    assert {c["key"] for c in applied["changes"] if c["target"] == "etcd"} == {f"{PREFIX}/services/svc-42"}
    assert change_transactions == 1
    deletes = [r for r in kube_api.writes() if r.method == "DELETE"]
    assert deletes and all("svc-99" in r.path for r in deletes)
    # Under mTLS (the default) svc-00 stops admitting svc-99: its sidecar's authorization (ConfigMap)
    # and its NetworkPolicy change with the removal; nothing else does.
    others = [(r.method, r.path) for r in kube_api.writes() if r.method != "DELETE"]
    assert sorted(path.rsplit("/", 2)[1:] for _, path in others) == [["configmaps", "svc-00-envoy"],
                                                                      ["networkpolicies", "svc-00"]], others
    assert pruned["targets"]["kubernetes"]["delete"] == len(deletes)
    assert kube_api.store_get("deployments", "svc-99", NAMESPACE) is None
    assert etcd_value(etcd_server, f"{PREFIX}/services/svc-99") is None
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == removal
