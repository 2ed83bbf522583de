"""`meshc plan/apply --repo` of a new commit plans only what changed since the commit etcd records
as applied (no LIST of the cluster); re-applying the recorded commit, or `--full`, plans everything
and so corrects hand edits of unchanged objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from meshc.sync.etcd_layout import read_snapshot
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.sync.specs import NAMESPACE, PREFIX, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]


def meshc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def lists(kube_api: KubeAPIHandle) -> int:
    return sum(1 for r in kube_api.requests if r.method == "GET" and "labelSelector" in r.query)


def test_a_new_commit_is_planned_against_the_recorded_one(tmp_path: Path, kube_api: KubeAPIHandle,
                                                          etcd_server: EtcdServer) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(6), sort_keys=False), "six services")
    targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd_server.url]
    assert meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets).returncode == 0
    apps = client.AppsV1Api(kube_api.api_client())
    apps.patch_namespaced_deployment("svc-004", NAMESPACE, {"spec": {"replicas": 9}})     # a hand edit
    change = repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(6, replicas={"svc-001": 3}), sort_keys=False),
                              "scale svc-001")
    kube_api.reset_log()

    planned = meshc("plan", "--repo", str(repo.path), "mesh.yaml", *targets)
    applied = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets)

    assert planned.returncode == 0 and applied.returncode == 0, applied.stderr
    assert lists(kube_api) == 0                                   # only the changed file's objects were read
    # svc-001's Deployment, and the disruption budget it gets now that it runs more than one replica
    assert sorted(w.path.rsplit("/", 2)[-2:] for w in kube_api.writes()) == [
        ["deployments", "svc-001"], ["poddisruptionbudgets", "svc-001"]]
    assert f"~ update    apps/v1 Deployment {NAMESPACE}/svc-001" in planned.stdout
    assert "svc-004" not in planned.stdout                       # not looked at: the edit stays, for now
    assert read_snapshot(etcd_server.client(), PREFIX).revision == change
    assert kube_api.store_get("deployments", "svc-004", NAMESPACE)["spec"]["replicas"] == 9  # type: ignore[index]

    kube_api.reset_log()
    again = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets)    # the recorded commit: in full

    assert again.returncode == 0, again.stderr
    assert lists(kube_api) > 0
    assert "drift: spec.replicas" in again.stdout and "svc-004" in again.stdout
    assert kube_api.store_get("deployments", "svc-004", NAMESPACE)["spec"]["replicas"] == 1  # type: ignore[index]


def test_full_plans_everything(tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(3), sort_keys=False), "three services")
    targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd_server.url]
    assert meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets).returncode == 0
    client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment("svc-002", NAMESPACE,
                                                                        {"spec": {"replicas": 5}})
    repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(3, replicas={"svc-000": 2}), sort_keys=False), "scale")
    kube_api.reset_log()

    applied = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets, "--full")

    assert applied.returncode == 0, applied.stderr
    assert lists(kube_api) > 0
    assert kube_api.store_get("deployments", "svc-002", NAMESPACE)["spec"]["replicas"] == 1  # type: ignore[index]
