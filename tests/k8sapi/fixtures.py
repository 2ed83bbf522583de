"""The `kube_api` pytest fixture: the API server double, or a real cluster when MESHC_TEST_KUBECONFIG is set."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from tests.k8sapi.server import FakeKubeAPI, Gate, RequestRecord

REAL_CLUSTER_ENV = "MESHC_TEST_KUBECONFIG"
T = TypeVar("T")


class KubeAPIHandle:
    """What a test gets: a kubeconfig, clients built from it, and (on the double) the test hooks."""

    def __init__(self, kubeconfig: Path, double: FakeKubeAPI | None, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.double = double
        self._workdir = workdir
        self._clients: list[client.ApiClient] = []
        self._namespaces: list[str] = []
        self._counter = itertools.count(1)

    @property
    def is_double(self) -> bool:
        return self.double is not None

    # ---- clients ------------------------------------------------------------------------------------

    def api_client(self) -> client.ApiClient:
        api_client: client.ApiClient = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._clients.append(api_client)
        return api_client

    def dynamic(self) -> DynamicClient:
        cache = self._workdir / f"discovery-{next(self._counter)}.json"
        return DynamicClient(self.api_client(), cache_file=str(cache))

    def create_namespace(self, prefix: str = "meshc-test") -> str:
        """A fresh namespace, deleted after the test; random-suffixed so a shared cluster never collides."""
        name = f"{prefix}-{next(self._counter)}" if self.is_double else f"{prefix}-{secrets.token_hex(4)}"
        namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        client.CoreV1Api(self.api_client()).create_namespace(namespace)
        self._namespaces.append(name)
        return name

    def eventually(self, check: Callable[[], T], timeout: float = 60.0) -> T:
        """Run `check` until it stops raising AssertionError.

        The double is synchronous, so there `check` runs once; a real cluster's controllers
        (namespace deletion, for one) need time.
        """
        deadline = time.monotonic() + (0 if self.is_double else timeout)
        while True:
            try:
                return check()
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)

    # ---- hooks only the double has ------------------------------------------------------------------

    def _need_double(self) -> FakeKubeAPI:
        if self.double is None:
            pytest.skip("needs the Kubernetes API test double; a real cluster is configured")
        return self.double

    @property
    def requests(self) -> list[RequestRecord]:
        return self._need_double().requests

    def writes(self) -> list[RequestRecord]:
        return self._need_double().writes()

    def reset_log(self) -> None:
        self._need_double().reset_log()

    def fail_next(self, n: int = 1, status: int = 500, methods: set[str] | None = None,
                  path_contains: str | None = None, message: str | None = None,
                  retry_after: int | None = None) -> None:
        self._need_double().fail_next(n, status, methods, path_contains, message, retry_after)

    def delay_next(self, n: int = 1, seconds: float = 0.5, methods: set[str] | None = None,
                   path_contains: str | None = None) -> None:
        self._need_double().delay_next(n, seconds, methods, path_contains)

    def hold_next(self, methods: set[str] | None = None, path_contains: str | None = None) -> Gate:
        return self._need_double().hold_next(methods, path_contains)

    def cut_next(self, n: int = 1, methods: set[str] | None = None, path_contains: str | None = None,
                 served: bool = False) -> None:
        self._need_double().cut_next(n, methods, path_contains, served)

    def store_get(self, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self._need_double().store_get(resource, name, namespace)

    def compact_history(self) -> None:
        """Forget the watch history up to now: older resource versions answer 410 Gone."""
        double = self._need_double()
        double.store.events.compact(double.store.revision)

    def expired_watches(self) -> int:
        """How many watches were answered 410 Gone (their resourceVersion was compacted)."""
        return self._need_double().store.events.expired

    def end_watches(self) -> None:
        """End every open watch stream cleanly, as the server does at its timeout."""
        self._need_double().store.events.end_streams()

    # ---- teardown -----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._namespaces and not self.is_double:
            core = client.CoreV1Api(self.api_client())
            for name in self._namespaces:
                try:
                    core.delete_namespace(name)
                except client.ApiException as error:
                    if error.status != 404:
                        raise
        for api_client in self._clients:
            api_client.close()


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeAPIHandle]:
    real_cluster = os.environ.get(REAL_CLUSTER_ENV)
    if real_cluster:
        handle = KubeAPIHandle(Path(real_cluster), None, tmp_path)
        try:
            yield handle
        finally:
            handle.close()
        return
    double = FakeKubeAPI().start()
    try:
        handle = KubeAPIHandle(double.write_kubeconfig(tmp_path / "kubeconfig"), double, tmp_path)
        try:
            yield handle
        finally:
            handle.close()
    finally:
        double.stop()
    if double.internal_errors:
        pytest.fail("the Kubernetes API test double failed internally:\n" + "\n".join(double.internal_errors))
