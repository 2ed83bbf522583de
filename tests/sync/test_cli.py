"""`meshc plan` and `meshc apply` as users run them: output, formats, exit codes, --repo/--rev."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.sync.specs import NAMESPACE, chain_spec

pytestmark = [pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]


def meshc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def write_spec(path: Path, spec: dict) -> Path:  # type: ignore[type-arg]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.etcd
def test_plan_then_apply_then_noop(tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    spec = write_spec(tmp_path / "mesh.yaml", chain_spec(2))
    targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd_server.url, "--output", str(tmp_path / "out")]

    plan = meshc("plan", str(spec), *targets, "--detailed-exitcode")
    assert plan.returncode == 3, plan.stderr
    assert f"  + create    v1 Namespace {NAMESPACE}" in plan.stdout
    assert f"  + create    apps/v1 Deployment {NAMESPACE}/svc-001" in plan.stdout
    summary = plan.stdout.strip().splitlines()[-1]
    assert summary.startswith("directory: 11 to create, 0 to update, 0 to delete; kubernetes: ")
    assert kube_api.writes() == []

    applied = meshc("apply", str(spec), *targets)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip().splitlines()[-1].startswith("applied ")
    writes = len(kube_api.writes())
    assert writes == 11   # Namespace + 2 x (ServiceAccount, ConfigMap, Service, headless Service, Deployment)

    again = meshc("apply", str(spec), *targets)
    assert again.returncode == 0 and "nothing to change; 0 writes" in again.stdout
    assert len(kube_api.writes()) == writes
    assert meshc("plan", str(spec), *targets, "--detailed-exitcode").returncode == 0


def test_plan_json_and_dry_run(tmp_path: Path, kube_api: KubeAPIHandle) -> None:
    spec = write_spec(tmp_path / "mesh.yaml", chain_spec(1))
    kube = ["--kubeconfig", str(kube_api.kubeconfig)]

    plan = meshc("plan", str(spec), *kube, "--format", "json")
    document = json.loads(plan.stdout)
    assert plan.returncode == 0 and document["changes"] is True and document["refusals"] == []
    [target] = document["targets"]
    assert target["target"] == "kubernetes" and target["counts"]["create"] == 6
    assert {c["action"] for c in target["changes"]} == {"create"}

    dry = meshc("apply", str(spec), *kube, "--dry-run")
    assert dry.returncode == 0 and "dry run: kubernetes: 6 to create" in dry.stdout
    assert kube_api.writes() == []


def test_apply_from_a_git_revision_and_refused_prune(tmp_path: Path, kube_api: KubeAPIHandle,
                                                     git_repo: GitRepo) -> None:
    first = git_repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(4), sort_keys=False), "four services")
    git_repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(4, drop=frozenset({"svc-002", "svc-003"})),
                                                     sort_keys=False), "two services")
    kube = ["--kubeconfig", str(kube_api.kubeconfig)]

    assert meshc("apply", "--repo", str(git_repo.path), "--rev", first, *kube).returncode == 0
    before = len(kube_api.writes())
    refused = meshc("apply", "--repo", str(git_repo.path), *kube, "--prune-limit", "5")
    assert refused.returncode == 1
    assert "refusing to prune: kubernetes: the plan deletes 10 objects, more than --prune-limit 5" in refused.stderr
    assert "nothing was written" in refused.stderr and len(kube_api.writes()) == before

    allowed = meshc("apply", "--repo", str(git_repo.path), *kube, "--prune-limit", "10")
    assert allowed.returncode == 0, allowed.stderr
    assert "10 deleted" in allowed.stdout


def test_invalid_spec_writes_nothing_and_usage_errors(tmp_path: Path, kube_api: KubeAPIHandle) -> None:
    spec = chain_spec(2)
    spec["spec"]["services"][0]["upstreams"][0]["service"] = "nowhere"
    bad = write_spec(tmp_path / "mesh.yaml", spec)

    result = meshc("apply", str(bad), "--kubeconfig", str(kube_api.kubeconfig))
    assert result.returncode == 1 and "[E201]" in result.stderr and "Traceback" not in result.stderr
    assert kube_api.requests == []

    no_target = meshc("apply", str(bad))
    assert no_target.returncode == 2 and "no target" in no_target.stderr
    missing = meshc("plan", str(bad), "--kubeconfig", str(tmp_path / "absent"))
    assert missing.returncode == 2 and "cannot load kubeconfig" in missing.stderr


def test_api_failure_is_reported_without_traceback(tmp_path: Path, kube_api: KubeAPIHandle) -> None:
    spec = write_spec(tmp_path / "mesh.yaml", chain_spec(1))
    kube_api.fail_next(50, status=503, methods={"PATCH"})
    result = meshc("apply", str(spec), "--kubeconfig", str(kube_api.kubeconfig))
    assert result.returncode == 1
    assert "503" in result.stderr and "transient failure, retry later" in result.stderr
    assert "Traceback" not in result.stderr and "test-double-token" not in result.stderr + result.stdout
