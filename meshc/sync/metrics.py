"""Prometheus metrics of the sync loop, and the small HTTP server that exposes them.

Every watcher gets its own registry (not prometheus_client's global one), so several watchers
in one process, as in tests, never share counters. prometheus_client is imported here only,
and this module only by `meshc watch`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import MetricsHandler

from meshc.threads import start_without_interrupts

RESULTS = ("applied", "noop", "invalid", "failed", "refused")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)

# The names users scrape and alert on; documented in docs/watch.md.
METRIC_NAMES = (
    "meshc_sync_total",
    "meshc_sync_duration_seconds",
    "meshc_last_applied_revision_info",
    "meshc_last_applied_timestamp_seconds",
    "meshc_last_sync_timestamp_seconds",
    "meshc_drifted_objects",
    "meshc_leader",
    "meshc_sync_writes",
    "meshc_writes_total",
    "meshc_source_errors_total",
)


class SyncMetrics:
    """The loop's counters and gauges; `record_*` methods keep the loop free of metric calls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.syncs = Counter("meshc_sync", "Sync passes by result: applied (wrote), noop (nothing to write), "
                             "invalid (commit does not compile), failed (a target failed), refused (signature "
                             "or prune guard)", ["result"], registry=r)
        self.duration = Histogram("meshc_sync_duration_seconds", "Time of one pass: plan and apply of every target",
                                  buckets=DURATION_BUCKETS, registry=r)
        self.revision = Info("meshc_last_applied_revision", "The commit last applied to every target", registry=r)
        self.applied_at = Gauge("meshc_last_applied_timestamp_seconds",
                                "Unix time the last applied commit was first applied to every target", registry=r)
        self.synced_at = Gauge("meshc_last_sync_timestamp_seconds",
                               "Unix time of the last pass that found or left every target at the desired state "
                               "(alert when it falls behind)", registry=r)
        self.drifted = Gauge("meshc_drifted_objects", "Objects found changed by others at the last drift check",
                             registry=r)
        self.leader = Gauge("meshc_leader", "1 while this replica holds the lock and may apply, else 0", registry=r)
        self.last_writes = Gauge("meshc_sync_writes", "Write requests made by the last pass", registry=r)
        self.writes = Counter("meshc_writes", "Write requests made, by target", ["target"], registry=r)
        self.source_errors = Counter("meshc_source_errors", "Polls of the Git source that failed", registry=r)
        for result in RESULTS:
            self.syncs.labels(result=result)

    def record_pass(self, result: str, seconds: float | None = None) -> None:
        self.syncs.labels(result=result).inc()
        if seconds is not None:
            self.duration.observe(seconds)

    def record_writes(self, per_target: dict[str, int]) -> None:
        for target, count in per_target.items():
            self.writes.labels(target=target).inc(count)
        self.last_writes.set(sum(per_target.values()))

    def record_applied(self, revision: str, mesh: str, *, new: bool) -> None:
        now = time.time()
        if new:
            self.revision.info({"revision": revision, "mesh": mesh})
            self.applied_at.set(now)
        self.synced_at.set(now)

    def set_drifted(self, count: int) -> None:
        self.drifted.set(count)

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def source_error(self) -> None:
        self.source_errors.inc()


class MetricsServer:
    """Serves /metrics (Prometheus text format) and /healthz (the loop is alive) in a thread."""

    def __init__(self, metrics: SyncMetrics, host: str, port: int, healthy: Callable[[], bool]) -> None:
        handler = _handler(metrics.registry, healthy)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="meshc-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        start_without_interrupts(self._thread)   # its request threads inherit the mask
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(registry: CollectorRegistry, healthy: Callable[[], bool]) -> Any:
    metrics_handler: Any = MetricsHandler.factory(registry)

    class Handler(metrics_handler):  # type: ignore[misc]
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                ok = healthy()
                body = b"ok\n" if ok else b"the sync loop is stuck\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the status lines

    return Handler

