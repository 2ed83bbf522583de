"""The directory target: files kept equal to the bundle by rename, only meshc's files touched,
and a real Envoy reading its cds/lds from the directory picks changes up without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from meshc.emit.naming import MANIFEST_PATH, outbound_listener_name
from meshc.pipeline import BuildOptions
from meshc.sync.directory import DirectoryTarget
from meshc.sync.engine import PruneRefused, sync_once
from meshc.sync.target import PermanentError, StalePlan
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import poll_until
from tests.sync.specs import bundle_of, chain_spec
from tests.traffic.sidecars import Client, caller_spec, local_port

pytestmark = pytest.mark.timeout(120)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's (inode, mtime_ns): a file replaced by rename gets a new inode."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_first_sync_writes_the_bundle_files(dir_target: DirectoryTarget) -> None:
    bundle = bundle_of(chain_spec(3))
    sync_once(bundle, [dir_target])
    on_disk = {p.relative_to(dir_target.root).as_posix(): p.read_bytes()
               for p in dir_target.root.rglob("*") if p.is_file()}
    assert on_disk == dict(bundle.files)


def test_a_new_commit_without_changes_rewrites_only_the_manifest(dir_target: DirectoryTarget) -> None:
    sync_once(bundle_of(chain_spec(3), revision="a" * 40), [dir_target], revision="a" * 40)
    before = snapshot(dir_target.root)

    report = sync_once(bundle_of(chain_spec(3), revision="f" * 40), [dir_target], revision="f" * 40)

    after = snapshot(dir_target.root)
    assert after.keys() == before.keys()
    assert {path for path in after if after[path] != before[path]} == {MANIFEST_PATH}
    assert report.write_requests == 1 and not report.changed
    assert [(target, change.key) for target, change in report.recorded] == [("directory", MANIFEST_PATH)]
    manifest = json.loads((dir_target.root / MANIFEST_PATH).read_text())
    assert manifest["source"]["revision"] == "f" * 40


def test_syncing_the_same_commit_again_touches_no_file(dir_target: DirectoryTarget) -> None:
    bundle = bundle_of(chain_spec(3), revision="f" * 40)
    sync_once(bundle, [dir_target], revision="f" * 40)
    before = snapshot(dir_target.root)

    report = sync_once(bundle_of(chain_spec(3), revision="f" * 40), [dir_target], revision="f" * 40)

    assert report.write_requests == 0 and report.results == [] and not report.recorded
    assert snapshot(dir_target.root) == before


def test_a_change_replaces_only_the_changed_files_by_rename(dir_target: DirectoryTarget) -> None:
    sync_once(bundle_of(chain_spec(5)), [dir_target])
    before = snapshot(dir_target.root)

    changed = bundle_of(chain_spec(5, replicas={"svc-002": 3}))
    report = sync_once(changed, [dir_target])

    after = snapshot(dir_target.root)
    replaced = {path for path in after if after[path] != before.get(path)}
    assert replaced == {"kubernetes/svc-002.yaml", "etcd/seed.json", MANIFEST_PATH}
    assert [c.key for c in report.plans[0].content_writes] == ["etcd/seed.json", "kubernetes/svc-002.yaml"]
    assert (dir_target.root / "kubernetes/svc-002.yaml").read_bytes() == changed.files["kubernetes/svc-002.yaml"]
    assert not [p for p in dir_target.root.rglob(".*.tmp")]


def test_removed_service_files_are_deleted_and_foreign_files_kept(dir_target: DirectoryTarget) -> None:
    sync_once(bundle_of(chain_spec(4)), [dir_target])
    notes = dir_target.root / "envoy" / "svc-003" / "NOTES.txt"
    notes.write_text("mine")
    (dir_target.root / "README").write_text("mine too")

    report = sync_once(bundle_of(chain_spec(4, drop=frozenset({"svc-003"}))), [dir_target])

    assert {c.key for c in report.plans[0].deletes} == {
        "envoy/svc-003/bootstrap.yaml", "envoy/svc-003/cds.yaml", "envoy/svc-003/lds.yaml",
        "kubernetes/svc-003.yaml"}
    assert not (dir_target.root / "kubernetes/svc-003.yaml").exists()
    assert notes.read_text() == "mine" and (dir_target.root / "README").read_text() == "mine too"


def test_empty_service_directories_are_removed(dir_target: DirectoryTarget) -> None:
    sync_once(bundle_of(chain_spec(3)), [dir_target])
    sync_once(bundle_of(chain_spec(3, drop=frozenset({"svc-001"}))), [dir_target])
    assert not (dir_target.root / "envoy" / "svc-001").exists()


def test_a_file_meshc_did_not_write_is_never_overwritten(dir_target: DirectoryTarget) -> None:
    theirs = dir_target.root / "etcd" / "seed.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("{}")
    with pytest.raises(PermanentError, match="not written by meshc"):
        sync_once(bundle_of(chain_spec(1)), [dir_target])
    assert theirs.read_text() == "{}"


def test_a_foreign_manifest_makes_the_directory_off_limits(dir_target: DirectoryTarget) -> None:
    dir_target.root.mkdir()
    (dir_target.root / MANIFEST_PATH).write_text('{"name": "some other tool"}')
    with pytest.raises(PermanentError, match="not written by meshc"):
        dir_target.plan(bundle_of(chain_spec(1)))


def test_replacing_every_service_is_refused(dir_target: DirectoryTarget) -> None:
    sync_once(bundle_of(chain_spec(1)), [dir_target])
    renamed = chain_spec(1)
    renamed["spec"]["services"][0]["name"] = "brand-new"
    with pytest.raises(PruneRefused):
        sync_once(bundle_of(renamed), [dir_target])
    assert (dir_target.root / "envoy/svc-000/cds.yaml").exists()


def test_a_plan_made_before_another_sync_is_stale(dir_target: DirectoryTarget) -> None:
    first, second = bundle_of(chain_spec(2)), bundle_of(chain_spec(2, replicas={"svc-000": 2}))
    stale = dir_target.plan(second)
    sync_once(first, [dir_target])
    with pytest.raises(StalePlan):
        dir_target.apply(stale, second)


@pytest.mark.envoy
def test_envoy_reading_the_directory_picks_up_a_changed_cluster_and_route_without_restart(
        tmp_path: Path, envoy_runner: EnvoyRunner, backend_pool: BackendPoolFactory) -> None:
    pool = backend_pool(names=["blue", "green"])
    out = tmp_path / "out"
    target = DirectoryTarget(out)

    def compiled(backend: str, timeout: str) -> Any:
        spec["spec"]["services"][0]["upstreams"][0]["timeout"] = timeout
        return bundle_of(spec, options=BuildOptions(config_dir=str(out / "envoy" / "{service}"),
                                                    envoy_hosts={"api": f"127.0.0.1:{pool[backend].port}"}))

    spec = caller_spec({"name": "api", "image": "example.com/api:1", "port": 8080})
    sync_once(compiled("blue", "3s"), [target])
    envoy = envoy_runner(out / "envoy" / "client" / "bootstrap.yaml", name="client")
    envoy.wait_for_listener(outbound_listener_name("api", local_port(spec)))
    pid = envoy.process.pid
    with Client(local_port(spec)) as client:
        poll_until(lambda: client.request("/").backend == "blue", timeout=10, ignore=(OSError,))
        assert '"timeout": "3s"' in json.dumps(envoy.config_dump("dynamic_listeners"))

        report = sync_once(compiled("green", "7s"), [target])

        envoy_writes = sorted(c.key for c in report.plans[0].content_writes if c.key.startswith("envoy/"))
        assert envoy_writes == ["envoy/client/cds.yaml", "envoy/client/lds.yaml"]   # not the bootstrap
        poll_until(lambda: client.request("/").backend == "green", timeout=10, ignore=(OSError,),
                   message="Envoy did not move to the new cluster endpoint")
        poll_until(lambda: '"timeout": "7s"' in json.dumps(envoy.config_dump("dynamic_listeners")), timeout=10,
                   message="Envoy did not load the new route timeout")
    assert envoy.process.pid == pid and envoy.running
    assert sorted(os.listdir(out / "envoy" / "client")) == ["bootstrap.yaml", "cds.yaml", "lds.yaml"]
