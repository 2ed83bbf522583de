"""`meshc plan/apply --repo` with compiled commits kept in the cache directory: the applied commit
is loaded instead of compiled, and nothing a run plans or writes depends on whether it was.
Real processes, a real etcd, the Kubernetes API double and real Git repositories."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from meshc import compile_cache
from meshc.cli import build_parser
from meshc.commands.common import build_options
from meshc.diagnostics import warning
from meshc.load import SpecSource
from meshc.load.git import read_spec_at_revision
from meshc.pipeline import Checked, Compiled, compile
from meshc.sync.etcd_layout import read_snapshot
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.server import FakeKubeAPI
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.sync.specs import NAMESPACE, PREFIX, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]
ROOT = Path(__file__).parents[2]


def meshc(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHC_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def lists(kube_api: KubeAPIHandle) -> int:
    return sum(1 for r in kube_api.requests if r.method == "GET" and "labelSelector" in r.query)


def entries(cache: Path) -> dict[str, float]:
    compile_cache.settle(cache)     # entries are written by a process the verb does not wait for
    return {path.name: path.stat().st_mtime_ns for path in cache.glob("compiled-*.pickle")}


def kept_files(cache: Path) -> list[Path]:
    compile_cache.settle(cache)
    return list(cache.glob("compiled-*.pickle"))


def commit(repo: GitRepo, message: str, **changes: Any) -> str:
    return repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(6, **changes), sort_keys=False), message)


class Bed:
    def __init__(self, tmp_path: Path, kube_api: KubeAPIHandle, etcd: EtcdServer) -> None:
        self.repo = GitRepo.init(tmp_path / "repo")
        self.kube_api = kube_api
        self.etcd = etcd
        self.targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd.url]

    def run(self, verb: str, *extra: str, cache: Path) -> subprocess.CompletedProcess[str]:
        return meshc(verb, "--repo", str(self.repo.path), "mesh.yaml", *self.targets, *extra, cache=cache)


@pytest.fixture
def bed(tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> Bed:
    return Bed(tmp_path, kube_api, etcd_server)


def test_the_kept_commit_gives_the_plan_of_a_compiled_one(bed: Bed, tmp_path: Path) -> None:
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    commit(bed.repo, "six services")
    assert bed.run("apply", cache=warm).returncode == 0
    (applied, used), = entries(warm).items()             # the applied commit, kept
    change = commit(bed.repo, "scale svc-001, new image for svc-004", replicas={"svc-001": 3},
                    images={"svc-004": "registry.example/svc-004:2.0"})
    bed.kube_api.reset_log()

    from_kept = bed.run("plan", "--format", "json", cache=warm)
    compiled_again = bed.run("plan", "--format", "json", cache=cold)

    assert from_kept.returncode == 0 and compiled_again.returncode == 0, from_kept.stderr + compiled_again.stderr
    assert json.loads(from_kept.stdout) == json.loads(compiled_again.stdout)
    assert lists(bed.kube_api) == 0                      # both planned against the applied commit
    assert entries(warm)[applied] > used                 # read (a read marks it used): it was not compiled
    assert len(entries(warm)) == 2 and len(entries(cold)) == 1     # the planned commit is kept too
    planned = json.loads(from_kept.stdout)
    bed.kube_api.reset_log()

    result = bed.run("apply", "--format", "json", cache=warm)     # the planned commit, loaded too

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [plan["changes"] for plan in report["plans"]] == [target["changes"] for target in planned["targets"]]
    assert lists(bed.kube_api) == 0
    assert sorted(w.path.rsplit("/", 2)[-2:] for w in bed.kube_api.writes()) == [
        ["deployments", "svc-001"], ["deployments", "svc-004"], ["poddisruptionbudgets", "svc-001"]]
    assert read_snapshot(bed.etcd.client(), PREFIX).revision == change


def test_writes_are_those_of_an_apply_without_the_cache(bed: Bed, tmp_path: Path) -> None:
    """The same commits applied to two clusters, with the applied commit kept and with nothing
    kept: the same requests write the same objects and etcd records."""
    if bed.kube_api.double is None:
        pytest.skip("compares the stores of two API server doubles")
    double = bed.kube_api.double
    other_kube = FakeKubeAPI().start()
    try:
        with EtcdServer(tmp_path / "other-etcd") as other_etcd:
            kubeconfig = other_kube.write_kubeconfig(tmp_path / "other-kubeconfig")
            other = ["--kubeconfig", str(kubeconfig), "--etcd", other_etcd.url]
            warm = tmp_path / "warm"
            commit(bed.repo, "six services")
            assert bed.run("apply", cache=warm).returncode == 0
            assert meshc("apply", "--repo", str(bed.repo.path), "mesh.yaml", *other, cache=tmp_path / "a").returncode == 0
            change = commit(bed.repo, "scale svc-001, new image for svc-004, svc-005 gone", replicas={"svc-001": 3},
                            images={"svc-004": "registry.example/svc-004:2.0"}, drop=frozenset({"svc-005"}))
            bed.kube_api.reset_log()
            other_kube.reset_log()

            kept = bed.run("apply", cache=warm)
            compiled = meshc("apply", "--repo", str(bed.repo.path), "mesh.yaml", *other, cache=tmp_path / "b")

            assert kept.returncode == 0 and compiled.returncode == 0, kept.stderr + compiled.stderr
            assert _untimed(kept.stdout) == _untimed(compiled.stdout)
            assert _writes(bed.kube_api.requests) == _writes(other_kube.requests)
            assert ["DELETE", "/apis/apps/v1/namespaces/sync-ns/deployments/svc-005"] in _writes(other_kube.requests)
            for resource in ("deployments", "configmaps", "services", "serviceaccounts", "poddisruptionbudgets"):
                assert _live(double.store_list(resource, NAMESPACE)) == _live(
                    other_kube.store_list(resource, NAMESPACE))
            mine, theirs = read_snapshot(bed.etcd.client(), PREFIX), read_snapshot(other_etcd.client(), PREFIX)
            assert mine.revision == theirs.revision == change
            assert mine.records == theirs.records
    finally:
        other_kube.stop()


def _untimed(text: str) -> str:
    return re.sub(r"\(\d+\.\d+s\)", "(-)", text)


def _writes(requests: list[Any]) -> list[list[str]]:
    return sorted([r.method, r.path] for r in requests if r.method not in ("GET", "HEAD"))


def _live(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What meshc set of each object (not what the server adds: uid, resourceVersion, managed fields, times)."""
    def kept(obj: dict[str, Any]) -> dict[str, Any]:
        metadata = obj["metadata"]
        spec = {key: value for key, value in (obj.get("spec") or {}).items() if key not in ("clusterIP", "clusterIPs")}
        return {"name": metadata["name"], "labels": metadata.get("labels"), "annotations": metadata.get("annotations"),
                "spec": spec, "data": obj.get("data")}

    return sorted((kept(obj) for obj in objects), key=lambda obj: str(obj["name"]))


def test_a_commit_that_leaves_the_spec_as_it_was_compiles_nothing(bed: Bed, own_cache_dir: Path) -> None:
    cache = own_cache_dir
    commit(bed.repo, "six services")
    assert bed.run("apply", cache=cache).returncode == 0
    _mark_kept(bed.repo, "HEAD")        # a warning no check gives: printed only by a run that loads the entry
    other = bed.repo.commit_file("README.md", "the mesh of the sync tests\n", "a README, the spec untouched")
    bed.kube_api.reset_log()

    result = bed.run("apply", cache=cache)

    assert result.returncode == 0, result.stderr
    assert "kept by the test" in result.stderr                              # loaded, not compiled
    assert bed.kube_api.writes() == [] and lists(bed.kube_api) == 0
    assert read_snapshot(bed.etcd.client(), PREFIX).revision == other       # the new commit is recorded


def test_a_damaged_kept_commit_is_compiled_again(bed: Bed, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    commit(bed.repo, "six services")
    assert bed.run("apply", cache=cache).returncode == 0
    (kept,) = kept_files(cache)
    kept.write_bytes(kept.read_bytes()[:1000])           # cut short, still the user's own 0600 file
    commit(bed.repo, "scale svc-001", replicas={"svc-001": 2})
    bed.kube_api.reset_log()

    result = bed.run("apply", cache=cache)

    assert result.returncode == 0, result.stderr
    assert lists(bed.kube_api) == 0                      # still planned against the applied commit
    assert sorted(w.path.rsplit("/", 2)[-2:] for w in bed.kube_api.writes()) == [
        ["deployments", "svc-001"], ["poddisruptionbudgets", "svc-001"]]


def test_a_kept_commit_others_could_have_written_is_not_read(bed: Bed, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    commit(bed.repo, "six services")
    assert bed.run("apply", cache=cache).returncode == 0
    (kept,) = kept_files(cache)
    kept.chmod(0o666)
    before = kept.stat().st_mtime_ns
    commit(bed.repo, "scale svc-001", replicas={"svc-001": 2})

    result = bed.run("plan", cache=cache)

    assert result.returncode == 0, result.stderr
    assert "apps/v1 Deployment sync-ns/svc-001" in result.stdout
    assert kept.stat().st_mtime_ns == before             # not read (a read marks it used)


HOSTED = ("--envoy-host", "svc-001=10.0.0.9:7000")    # svc-000's sidecar reaches svc-001 there


def hosted(kube_api: KubeAPIHandle) -> bool:
    """Whether the live ConfigMap of svc-000's sidecar sends to the HOSTED address."""
    config_map = kube_api.store_get("configmaps", "svc-000-envoy", NAMESPACE)
    assert config_map is not None
    return "10.0.0.9" in str(config_map["data"])


def test_the_applied_commit_kept_with_other_build_options_is_not_planned_against(bed: Bed, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    commit(bed.repo, "six services")
    assert bed.run("apply", *HOSTED, cache=cache).returncode == 0
    assert bed.run("apply", cache=cache).returncode == 0     # the commit again, without: what is live now
    assert not hosted(bed.kube_api)
    commit(bed.repo, "scale svc-002", replicas={"svc-002": 2})
    bed.kube_api.reset_log()

    # the parent's kept compilation with these options is checked from, but not planned against
    result = bed.run("apply", *HOSTED, cache=cache)

    assert result.returncode == 0, result.stderr
    assert hosted(bed.kube_api)
    assert lists(bed.kube_api) > 0                           # planned in full


def test_full_compiles_afresh_and_finds_objects_deleted_by_hand(bed: Bed, own_cache_dir: Path) -> None:
    cache = own_cache_dir
    commit(bed.repo, "six services")
    assert bed.run("apply", cache=cache).returncode == 0
    client.CoreV1Api(bed.kube_api.api_client()).delete_namespaced_config_map("svc-002-envoy", NAMESPACE)  # by hand
    client.AppsV1Api(bed.kube_api.api_client()).delete_namespaced_deployment("svc-005", NAMESPACE)
    commit(bed.repo, "scale svc-001", replicas={"svc-001": 2})
    assert bed.run("apply", cache=cache).returncode == 0                         # incremental: not seen
    assert bed.kube_api.store_get("configmaps", "svc-002-envoy", NAMESPACE) is None
    head = commit(bed.repo, "scale svc-003", replicas={"svc-003": 2})
    _keep_a_lie(bed.repo, head)
    bed.kube_api.reset_log()

    full = bed.run("apply", "--full", cache=cache)

    assert full.returncode == 0, full.stderr
    assert lists(bed.kube_api) > 0
    assert bed.kube_api.store_get("configmaps", "svc-002-envoy", NAMESPACE) is not None
    assert bed.kube_api.store_get("deployments", "svc-005", NAMESPACE) is not None
    assert bed.kube_api.store_get("deployments", "svc-004", NAMESPACE) is not None      # the lie was not read
    assert bed.kube_api.store_get("deployments", "svc-003", NAMESPACE)["spec"]["replicas"] == 2  # type: ignore[index]
    assert read_snapshot(bed.etcd.client(), PREFIX).revision == head


def _mark_kept(repo: GitRepo, revision: str) -> None:
    """Keep the compilation of `revision` with one more warning, which tells a run that loaded it."""
    options = build_options(build_parser(["apply"]).parse_args(["apply", "--etcd", "http://x"]))
    source = read_spec_at_revision(str(repo.path), revision, "mesh.yaml")
    kept = compile_cache.load(source, options)
    assert kept is not None
    marker = warning("W201", "kept by the test", None)
    compile_cache.store(Compiled(replace(kept.checked, diagnostics=(*kept.diagnostics, marker)), kept.bundle, options))


def _keep_a_lie(repo: GitRepo, revision: str) -> None:
    """Keep, as the compilation of `revision`, that of another spec (one service fewer): a run
    that read it would prune that service."""
    options = build_options(build_parser(["apply"]).parse_args(["apply", "--etcd", "http://x"]))
    source = read_spec_at_revision(str(repo.path), revision, "mesh.yaml")
    other = compile(SpecSource(source.name, yaml.safe_dump(chain_spec(6, drop=frozenset({"svc-004"}))).encode(),
                               source.revision), options)
    assert other.bundle is not None
    compile_cache.store(Compiled(Checked(source, other.diagnostics, other.checked.mesh), other.bundle, options))
    assert compile_cache.load(source, options) is not None
