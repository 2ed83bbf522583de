"""`meshc apply --repo` checking a new commit incrementally from the kept compilation of its parent
(meshc.incremental): the cluster and etcd end up as an apply that checks in full leaves them, and a
commit that breaks the changed service is reported as the full check reports it. Real processes
(whose check is watched by a thin wrapper around meshc's own entry point), a real etcd, the
Kubernetes API double and a real Git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc import compile_cache
from meshc.sync.etcd_layout import read_snapshot
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.server import FakeKubeAPI
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.sync.specs import NAMESPACE, PREFIX, chain_spec
from tests.sync.test_cli_cache import _live, _untimed, _writes, meshc

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]
ROOT = Path(__file__).parents[2]

# meshc's entry point, with the incremental check and the full check counted into a JSON file
WATCHED = """
import json, sys
from meshc import incremental
from meshc.commands import common

made, full = [], []
check_from, checked_source = incremental.check_from, common.checked_source

def counted_check_from(*args, **kwargs):
    result = check_from(*args, **kwargs)
    made.append(result is not None)
    return result

def counted_checked_source(*args, **kwargs):
    full.append(1)
    return checked_source(*args, **kwargs)

incremental.check_from, common.checked_source = counted_check_from, counted_checked_source
from meshc.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump({"incremental": made, "full": len(full)}, out)
sys.exit(code)
"""


def watched(args: list[str], cache: Path, record: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {**os.environ, "MESHC_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-c", WATCHED, str(record), *args], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    counts: dict[str, Any] = json.loads(record.read_text())
    return result, counts


def commit(repo: GitRepo, message: str, text: str) -> str:
    return repo.commit_file("mesh.yaml", text, message)


def spec_text(**changes: Any) -> str:
    return yaml.safe_dump(chain_spec(6, **changes), sort_keys=False)


def test_an_incrementally_checked_apply_leaves_what_a_full_one_leaves(
        tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    if kube_api.double is None:
        pytest.skip("compares the stores of two API server doubles")
    repo = GitRepo.init(tmp_path / "repo")
    other_kube = FakeKubeAPI().start()
    try:
        with EtcdServer(tmp_path / "other-etcd") as other_etcd:
            mine = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd_server.url]
            other = ["--kubeconfig", str(other_kube.write_kubeconfig(tmp_path / "other-kubeconfig")),
                     "--etcd", other_etcd.url]
            warm = tmp_path / "warm"
            commit(repo, "six services", spec_text())
            for targets, cache in ((mine, warm), (other, tmp_path / "a")):
                first = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets, cache=cache)
                assert first.returncode == 0, first.stderr
            compile_cache.settle(warm)
            change = commit(repo, "new image for svc-004, svc-001 scaled", spec_text(
                replicas={"svc-001": 3}, images={"svc-004": "registry.example/svc-004:2.0"}))
            kube_api.reset_log()
            other_kube.reset_log()

            fast, counts = watched(["apply", "--repo", str(repo.path), "mesh.yaml", *mine], warm,
                                   tmp_path / "fast.json")
            full = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *other, cache=tmp_path / "b")

            assert fast.returncode == 0 and full.returncode == 0, fast.stderr + full.stderr
            assert counts == {"incremental": [True], "full": 0}
            assert _untimed(fast.stdout) == _untimed(full.stdout)
            assert _writes(kube_api.requests) == _writes(other_kube.requests) != []
            double = kube_api.double
            for resource in ("deployments", "configmaps", "services", "serviceaccounts", "poddisruptionbudgets"):
                assert _live(double.store_list(resource, NAMESPACE)) == _live(
                    other_kube.store_list(resource, NAMESPACE))
            deployment = next(d for d in double.store_list("deployments", NAMESPACE)
                              if d["metadata"]["name"].startswith("svc-004"))
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/svc-004:2.0"
            ours, theirs = read_snapshot(etcd_server.client(), PREFIX), read_snapshot(other_etcd.client(), PREFIX)
            assert ours.revision == theirs.revision == change
            assert ours.records == theirs.records

            # a full plan, compiled afresh, finds nothing left to do on the cluster or in etcd
            compile_cache.settle(warm)
            again = meshc("plan", "--repo", str(repo.path), "mesh.yaml", *mine, "--full", "--detailed-exitcode",
                          cache=tmp_path / "c")
            assert again.returncode == 0, again.stdout + again.stderr
    finally:
        other_kube.stop()


def _applied_repo(tmp_path: Path, kube_api: KubeAPIHandle,
                  etcd_server: EtcdServer) -> tuple[GitRepo, list[str], Path]:
    """A repository of six services, applied, its compilation kept in the cache `warm`."""
    repo = GitRepo.init(tmp_path / "repo")
    targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd_server.url]
    warm = tmp_path / "warm"
    commit(repo, "six services", spec_text())
    assert meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets, cache=warm).returncode == 0
    compile_cache.settle(warm)
    return repo, targets, warm


def test_a_commit_breaking_the_changed_service_is_reported_as_a_full_check_does(
        tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    repo, targets, warm = _applied_repo(tmp_path, kube_api, etcd_server)
    text = spec_text().replace("image: registry.example/svc-003:1.0", "image: ''")
    assert text != spec_text()
    commit(repo, "svc-003 loses its image", text)
    kube_api.reset_log()

    broken, counts = watched(["apply", "--repo", str(repo.path), "mesh.yaml", *targets], warm,
                             tmp_path / "broken.json")
    validate = meshc("validate", "--repo", str(repo.path), "mesh.yaml", cache=tmp_path / "cold")

    assert counts == {"incremental": [False], "full": 1}
    assert broken.returncode == validate.returncode == 1
    errors = [line for line in broken.stderr.splitlines() if "error:" in line and "[E" in line]
    assert errors and errors == [line for line in validate.stderr.splitlines() if "error:" in line and "[E" in line]
    assert errors[0].startswith("mesh.yaml:") and ":" in errors[0].split()[0]
    assert _writes(kube_api.requests) == []


def test_a_commit_whose_parent_was_never_compiled_is_checked_from_the_applied_one(
        tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    """Two commits pushed at once: the first was never compiled here, so the second is checked
    incrementally from the commit etcd records as applied (found by the prefix in the header)."""
    repo, targets, warm = _applied_repo(tmp_path, kube_api, etcd_server)
    commit(repo, "svc-002 scaled", spec_text(replicas={"svc-002": 2}))
    last = commit(repo, "and svc-004's new image", spec_text(
        replicas={"svc-002": 2}, images={"svc-004": "registry.example/svc-004:2.0"}))

    applied, counts = watched(["apply", "--repo", str(repo.path), "mesh.yaml", *targets], warm,
                              tmp_path / "applied.json")

    assert applied.returncode == 0, applied.stderr
    assert counts == {"incremental": [True], "full": 0}
    assert read_snapshot(etcd_server.client(), PREFIX).revision == last
    compile_cache.settle(warm)
    again = meshc("plan", "--repo", str(repo.path), "mesh.yaml", *targets, "--full", "--detailed-exitcode",
                  cache=tmp_path / "cold")
    assert again.returncode == 0, again.stdout + again.stderr
