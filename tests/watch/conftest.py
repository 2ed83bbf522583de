"""Fixtures of the watch tests: real targets (Kubernetes API double, etcd, a directory) and a repo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshc.sync.directory import DirectoryTarget
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.watch.specs import SPEC_PATH, mesh_spec


@pytest.fixture
def kube_target(kube_api: KubeAPIHandle) -> Iterator[KubernetesTarget]:
    target = KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig))
    yield target
    target.close()


@pytest.fixture
def etcd_target(etcd_server: EtcdServer) -> Iterator[EtcdTarget]:
    target = EtcdTarget(etcd_server.url, timeout=2.0)
    yield target
    target.close()


@pytest.fixture
def dir_target(tmp_path: Path) -> DirectoryTarget:
    return DirectoryTarget(tmp_path / "out")


@pytest.fixture
def mesh_repo(git_repo: GitRepo) -> GitRepo:
    """A repository whose main branch holds a valid 3-service mesh.yaml."""
    git_repo.commit_file(SPEC_PATH, mesh_spec(3), "Add the demo mesh")
    return git_repo
