"""pytest fixtures for real processes; every process started here is stopped at teardown.

When a test fails, the log tails of its Envoy and etcd processes are printed at teardown, so
they appear in pytest's report under "Captured stdout teardown".
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.backends import BackendPool
from tests.support.envoy import STARTUP_TIMEOUT, EnvoyProcess
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return any(report.failed for report in request.node.stash.get(_REPORTS, {}).values())


class BackendPoolFactory(Protocol):
    def __call__(self, count: int = 0, names: Sequence[str] = ()) -> BackendPool: ...


class EnvoyRunner(Protocol):
    def __call__(
        self,
        bootstrap: str | Path,
        *,
        name: str = "envoy",
        log_level: str = "info",
        drain_time_s: int = 1,
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> EnvoyProcess: ...


@pytest.fixture
def etcd_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    """A started etcd with its data under tmp_path."""
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        if _test_failed(request):
            print(f"\n{server.process.name}:\n{server.log_tail()}")
        server.close()


@pytest.fixture
def backend_pool() -> Iterator[BackendPoolFactory]:
    """`backend_pool(3)` or `backend_pool(names=["v1", "v2"])` returns started backends."""
    pools: list[BackendPool] = []

    def start(count: int = 0, names: Sequence[str] = ()) -> BackendPool:
        pool = BackendPool(count, names)
        pools.append(pool)
        return pool.start()

    try:
        yield start
    finally:
        for pool in pools:
            pool.stop()


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    """An empty repository (branch main) in tmp_path/repo."""
    return GitRepo.init(tmp_path / "repo")


@pytest.fixture
def envoy_runner(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EnvoyRunner]:
    """`envoy_runner(bootstrap_path)` returns an Envoy that is LIVE; all are stopped at teardown."""
    started: list[EnvoyProcess] = []

    def run(
        bootstrap: str | Path,
        *,
        name: str = "envoy",
        log_level: str = "info",
        drain_time_s: int = 1,
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> EnvoyProcess:
        envoy = EnvoyProcess(
            bootstrap,
            tmp_path / "envoy",
            name=name,
            log_level=log_level,
            drain_time_s=drain_time_s,
            extra_args=extra_args,
            startup_timeout=startup_timeout,
        )
        started.append(envoy)
        envoy.start()
        return envoy

    try:
        yield run
    finally:
        if _test_failed(request):
            for envoy in started:
                print(f"\n{envoy.process.name}:\n{envoy.log_tail()}")
        for envoy in started:
            envoy.stop()
