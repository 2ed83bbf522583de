"""What operators see: access logs on stdout in the chosen format, Prometheus stats on the stats port,
and Envoy's admin API on loopback only (never through the stats port, never on another address)."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.support.fixtures import BackendPoolFactory
from tests.support.httpclient import http_request
from tests.traffic.conftest import ClientSidecar
from tests.traffic.sidecars import caller_spec, proxy_port, spread, static_service

pytestmark = pytest.mark.envoy

FLUSH_WAIT = 0.3   # Envoy flushes access logs every 20 ms in tests (--file-flush-interval-msec)


def test_json_access_log(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    sidecar, client = client_sidecar(caller_spec(static_service("api", [backend.port]), access_log="json"))
    assert client.request("/probe-json?x=1", {"user-agent": "meshc-test"}).status == 200
    lines = [line for line in sidecar.wait_for_stdout("/probe-json").splitlines() if "/probe-json" in line]
    entry = json.loads(lines[0])
    assert entry["path"] == "/probe-json?x=1" and entry["method"] == "GET"
    assert entry["response_code"] == 200 and entry["upstream_cluster"] == "api"
    assert entry["upstream_host"] == f"127.0.0.1:{backend.port}" and entry["user_agent"] == "meshc-test"
    assert isinstance(entry["duration_ms"], int)


def test_text_access_log(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    sidecar, client = client_sidecar(caller_spec(static_service("api", [backend.port]), access_log="text"))
    assert client.request("/probe-text").status == 200
    stdout = sidecar.wait_for_stdout("/probe-text")
    assert re.search(r'^\[[^]]+\] "GET /probe-text HTTP/1\.1" 200 - ', stdout, re.MULTILINE), stdout
    assert not stdout.lstrip().startswith("{")


def test_access_log_off(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    sidecar, client = client_sidecar(caller_spec(static_service("api", [backend.port]), access_log="off"))
    assert client.request("/probe-off").status == 200
    sidecar.wait_for_stat("cluster.api.upstream_rq_completed")
    time.sleep(FLUSH_WAIT)   # proving an absence: wait several flush intervals
    assert sidecar.stdout_text() == ""


def test_stats_port_serves_prometheus_and_readiness_only(backend_pool: BackendPoolFactory,
                                                         client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    spec = caller_spec(static_service("api", [backend.port]))
    sidecar, client = client_sidecar(spec)
    spread(client, 7)
    stats = f"http://127.0.0.1:{proxy_port(spec, 'statsPort')}"
    metrics = http_request(stats + "/stats/prometheus")
    assert metrics.status == 200
    assert re.search(r'^envoy_cluster_upstream_rq_total\{envoy_cluster_name="api"\} 7$', metrics.text, re.MULTILINE)
    ready = http_request(stats + "/ready")
    assert (ready.status, ready.text.strip()) == (200, "LIVE")
    for path in ("/config_dump", "/quitquitquit", "/clusters", "/stats", "/logging", "/server_info", "/",
                 "/stats/prometheus/../../config_dump", "//config_dump", "/ready/../quitquitquit", "/%2e%2e/config_dump"):
        assert http_request(stats + path).status == 404, path
    for method, path in (("POST", "/quitquitquit"), ("POST", "/healthcheck/fail"), ("POST", "/stats/prometheus"),
                         ("POST", "/logging?level=trace"), ("POST", "/reset_counters")):
        assert http_request(stats + path, method=method).status == 404, (method, path)
    assert sidecar.running and sidecar.stat("cluster.api.upstream_rq_total") == 7   # nothing was reset or stopped


def test_admin_is_not_reachable_on_a_non_loopback_address(client_sidecar: ClientSidecar) -> None:
    spec = caller_spec(static_service("api", [1]))
    sidecar, _ = client_sidecar(spec)
    admin_port = proxy_port(spec, "adminPort")
    assert sidecar.admin_url == f"http://127.0.0.1:{admin_port}"
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with socket.create_connection((address, proxy_port(spec, "statsPort")), timeout=2):
        pass                                                 # the address is reachable: stats listens on 0.0.0.0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, admin_port), timeout=2).close()


def _non_loopback_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address
