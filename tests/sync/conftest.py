"""Fixtures for sync tests: targets pointed at the Kubernetes API double, a real etcd, a tmp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshc.sync.directory import DirectoryTarget
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer


@pytest.fixture
def kube_target(kube_api: KubeAPIHandle) -> Iterator[KubernetesTarget]:
    target = KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig))
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def etcd_target(etcd_server: EtcdServer) -> Iterator[EtcdTarget]:
    target = EtcdTarget(etcd_server.url, timeout=2.0)
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def dir_target(tmp_path: Path) -> DirectoryTarget:
    return DirectoryTarget(tmp_path / "out")


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's meshc processes keep compiled commits (meshc.compile_cache) in a directory of
    the test's own: test repositories make the same commits every run, and a test must not find
    what another test, or an earlier run, compiled."""
    directory = tmp_path / "meshc-cache"
    monkeypatch.setenv("MESHC_CACHE_DIR", str(directory))
    return directory
