"""The whole path on loopback: caller app -> caller sidecar (localPort) -> callee sidecar (inbound)
-> callee app, two real Envoys built by meshc, the caller pointed at the callee with `envoy_hosts`.
The hop between the sidecars is mTLS (the default), with certificates from `meshc ca`.

Both sidecars share one machine, so each is built with its own proxy ports (on Kubernetes or VMs
every sidecar uses the same ports on its own address).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import poll_until
from tests.traffic.sidecars import (
    Client,
    envoy_files,
    install,
    issue_certificates,
    local_port,
    proxy_port,
    spread,
    with_free_ports,
)

pytestmark = pytest.mark.envoy


def mesh(app_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "loopback"},
        "spec": {
            "proxy": {"accessLog": "json"},
            "services": [
                {"name": "frontend", "image": "frontend:1", "port": 8080,
                 "upstreams": [{"service": "catalog", "localPort": 1, "timeout": "2s",
                                "retries": {"attempts": 2, "retryOn": ["5xx"]}}]},
                {"name": "catalog", "image": "catalog:1", "port": app_port,
                 "healthCheck": {"path": "/healthz", "interval": "200ms", "timeout": "100ms"}},
            ],
        },
    }


def test_request_crosses_both_sidecars_to_the_callee_app(backend_pool: BackendPoolFactory, tmp_path: Path,
                                                          envoy_runner: EnvoyRunner) -> None:
    (app,) = backend_pool(names=["catalog-app"])
    root = tmp_path / "config"
    caller = with_free_ports(mesh(app.port))
    callee = with_free_ports(mesh(app.port))             # the callee's sidecar gets ports of its own
    callee_inbound = proxy_port(callee, "inboundPort")
    tls_root = issue_certificates(caller, tmp_path)
    caller_files = envoy_files(caller, root, hosts={"catalog": f"127.0.0.1:{callee_inbound}"}, tls_root=tls_root)
    callee_files = envoy_files(callee, root, tls_root=tls_root)

    catalog = envoy_runner(install(callee_files, "catalog", root), name="catalog")
    frontend = envoy_runner(install(caller_files, "frontend", root), name="frontend")
    frontend.wait_for_cluster_healthy("catalog")          # its health checks cross the callee's sidecar too
    assert app.health_checks >= 1

    app.reset_counts()
    with Client(local_port(caller, "frontend")) as client:
        assert spread(client, 50) == {"catalog-app": 50}
        app.fail_first(1)
        answer = client.request("/retried")
        assert answer.status == 200                         # the caller's retry policy, across the path
    assert app.hits == 52
    assert app.requests[-1].headers["x-envoy-attempt-count"] == "2"

    assert frontend.stat("cluster.catalog.upstream_rq_total") == 52
    assert catalog.stat("http.inbound.downstream_rq_completed") >= 52
    assert catalog.stat("cluster.local_app.upstream_rq_completed") >= 52
    outbound = poll_until(lambda: _log_entries(frontend.stdout_text(), "/retried"), timeout=5)
    inbound = poll_until(lambda: _log_entries(catalog.stdout_text(), "/retried")[1:] and
                         _log_entries(catalog.stdout_text(), "/retried"), timeout=5)
    assert {e["upstream_cluster"] for e in outbound} == {"catalog"}
    assert outbound[-1]["upstream_host"] == f"127.0.0.1:{callee_inbound}"
    assert {e["upstream_cluster"] for e in inbound} == {"local_app"}
    assert {e["downstream_peer_identity"] for e in inbound} == {"spiffe://cluster.local/ns/loopback/sa/frontend"}
    assert frontend.stat("cluster.catalog.ssl.handshake") >= 1
    assert [e["response_code"] for e in inbound] == [503, 200]   # the callee saw both attempts


def _log_entries(stdout: str, path: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in entries if e.get("path") == path]
