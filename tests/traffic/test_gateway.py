"""An ingress gateway in real Envoy: HTTPS for its host with a test CA, an HTTP->HTTPS redirect,
routes by host and path to mesh services (loopback backends), 404 for everything else, and a
renewed certificate served without a restart."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any

import pytest

from meshc.emit import naming
from meshc.pipeline import BuildOptions, compile
from tests.support.backends import BackendPool
from tests.support.certs import TestCA, write_tls_secret
from tests.support.envoy import EnvoyProcess, atomic_write
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import LOOPBACK, free_ports, poll_until
from tests.traffic.sidecars import CONFIG_DIR_TEMPLATE, Client, install, source_of, with_free_ports

pytestmark = pytest.mark.envoy

HOST = "shop.example.com"
SECRET = "shop-tls"
GATEWAY = naming.gateway_name("public")


def gateway_spec(https_port: int, http_port: int) -> dict[str, Any]:
    return with_free_ports({
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "edge"},
        "spec": {"proxy": {"accessLog": "off"}, "security": {"mtls": "off"}, "services": [
            {"name": "api", "image": "api:1", "port": 8080},
            {"name": "frontend", "image": "frontend:1", "port": 8080},
        ], "gateways": [{"name": "public", "listeners": [
            {"port": https_port, "hosts": [HOST], "tls": {"secretName": SECRET}},
            {"port": http_port, "hosts": ["*"], "redirectToHttps": True},
        ], "routes": [
            {"match": {"host": HOST, "path": {"prefix": "/api"}}, "service": "api"},
            {"match": {"path": {"prefix": "/"}}, "service": "frontend"},
        ]}]}})


@dataclass
class Edge:
    envoy: EnvoyProcess
    ca: TestCA
    https_port: int
    http_port: int
    tls_dir: Path

    def https(self, path: str, host: str = HOST, sni: str = HOST) -> tuple[int, dict[str, str], bytes, int]:
        """(status, headers, body, serial of the certificate served) of one GET over TLS."""
        context = ssl.create_default_context(cadata=self.ca.pem.decode())
        raw = socket.create_connection((LOOPBACK, self.https_port), timeout=10)
        sock = context.wrap_socket(raw, server_hostname=sni)
        try:
            der = sock.getpeercert(binary_form=True)
            assert der is not None
            from cryptography import x509
            serial = x509.load_der_x509_certificate(der).serial_number
            connection = HTTPSConnection(host, self.https_port, context=context)
            connection.sock = sock
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(), serial
        finally:
            sock.close()

    def http(self, path: str, host: str = HOST) -> tuple[int, dict[str, str]]:
        connection = HTTPConnection(LOOPBACK, self.http_port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": f"{host}:{self.http_port}"})
            response = connection.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()


def install_gateway(files: Mapping[str, bytes], root: Path, gateway: str = GATEWAY) -> Path:
    """Write every Envoy file of one gateway into root/<gateway>; returns the bootstrap's path."""
    directory = root / gateway
    directory.mkdir(parents=True, exist_ok=True)
    prefix = f"envoy/{gateway}/"
    for path, data in files.items():
        if path.startswith(prefix):
            atomic_write(directory / path.removeprefix(prefix), data.decode())
    return directory / naming.BOOTSTRAP_FILE


@pytest.fixture
def edge(tmp_path: Path, envoy_runner: EnvoyRunner, backend_pool: BackendPoolFactory) -> Iterator[tuple[Edge, BackendPool]]:
    pool = backend_pool(names=["api", "frontend"])
    https_port, http_port = free_ports(2)
    spec = gateway_spec(https_port, http_port)
    ca = TestCA()
    tls_dir = tmp_path / "tls"
    write_tls_secret(tls_dir / SECRET, ca.issue(HOST))
    root = tmp_path / "config"
    options = BuildOptions(config_dir=str(root / CONFIG_DIR_TEMPLATE),
                           envoy_hosts={b.name: f"{LOOPBACK}:{b.port}" for b in pool},
                           gateway_tls_dir=str(tls_dir / "{secret}"))
    compiled = compile(source_of(spec), options)
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    envoy = envoy_runner(install_gateway(compiled.bundle.files, root), name=GATEWAY)
    envoy.wait_for_listener(f"{GATEWAY}|{https_port}")
    envoy.wait_for_listener(f"{GATEWAY}|{http_port}")
    yield Edge(envoy, ca, https_port, http_port, tls_dir / SECRET), pool


def test_https_routes_by_host_and_path(edge: tuple[Edge, BackendPool]) -> None:
    gateway, pool = edge
    status, headers, _, _ = gateway.https("/api/items")
    assert (status, headers.get("x-backend")) == (200, "api")
    status, headers, _, _ = gateway.https("/")
    assert (status, headers.get("x-backend")) == (200, "frontend")
    assert pool["api"].requests[-1].path == "/api/items"
    # Routes see a path once normalized, slashes merged and escaped letters decoded (so E621 refuses
    # a route path holding '//', '/./', '/../' or '%61': no request has one by then): these reach
    # /api, not the frontend.
    for path in ("/static/../api/items", "//api/./items", "/%61pi/items"):
        status, headers, _, _ = gateway.https(path)
        assert (status, headers.get("x-backend")) == (200, "api"), path
        assert pool["api"].requests[-1].path == "/api/items"


def test_unknown_host_gets_404(edge: tuple[Edge, BackendPool]) -> None:
    gateway, pool = edge
    status, _, _, _ = gateway.https("/api/items", host="evil.example.com")
    assert status == 404
    assert pool.total_hits == 0


def test_plain_http_is_redirected_to_https(edge: tuple[Edge, BackendPool]) -> None:
    gateway, pool = edge
    status, headers = gateway.http("/api/items?x=1")
    assert status == 301
    assert headers["location"] == f"https://{HOST}:{gateway.https_port}/api/items?x=1"
    assert pool.total_hits == 0


def test_renewed_certificate_is_served_without_a_restart(edge: tuple[Edge, BackendPool]) -> None:
    gateway, _ = edge
    *_, first = gateway.https("/")
    renewed = gateway.ca.issue(HOST)
    write_tls_secret(gateway.tls_dir, renewed)
    poll_until(lambda: gateway.https("/")[3] == renewed.serial, timeout=10)
    assert first != renewed.serial
    assert gateway.envoy.running


# --- the gateway as a mesh caller ---------------------------------------------------------

def test_gateway_reaches_a_strict_mtls_service_with_its_own_identity(
        tmp_path: Path, envoy_runner: EnvoyRunner, backend_pool: BackendPoolFactory) -> None:
    """Gateway -> api's sidecar (strict mTLS, RBAC from the call graph) -> api's app. Nobody in the
    mesh calls `api`: only the gateway routing to it makes it an allowed caller."""
    from meshc.cli import main as meshc_main

    (app,) = backend_pool(names=["api-app"])
    (http_port,) = free_ports(1)
    spec = with_free_ports({
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "edge"},
        "spec": {"proxy": {"accessLog": "json"}, "security": {"mtls": "strict"},
                 "services": [{"name": "api", "image": "api:1", "port": app.port}],
                 "gateways": [{"name": "public", "listeners": [{"port": http_port, "hosts": ["*"]}],
                               "routes": [{"match": {"path": {"prefix": "/api"}}, "service": "api"}]}]}})
    spec_file = tmp_path / "mesh.json"
    spec_file.write_text(json.dumps(spec))
    assert meshc_main(["ca", "init", str(tmp_path / "ca")]) == 0
    assert meshc_main(["ca", "issue", str(spec_file), "--ca", str(tmp_path / "ca"), "-o", str(tmp_path / "tls")]) == 0
    assert (tmp_path / "tls" / GATEWAY / "tls.crt").exists()        # `meshc ca issue` covers gateways
    root = tmp_path / "config"
    inbound = spec["spec"]["proxy"]["inboundPort"]
    options = BuildOptions(config_dir=str(root / CONFIG_DIR_TEMPLATE), envoy_hosts={"api": f"{LOOPBACK}:{inbound}"},
                           tls_dir=str(tmp_path / "tls" / "{service}"))
    compiled = compile(source_of(spec), options)
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    files = compiled.bundle.files
    api = envoy_runner(install(files, "api", root), name="api")
    api.wait_for_listener(naming.INBOUND_LISTENER)
    # the gateway runs beside the api sidecar on one machine: its admin and stats ports must differ
    gateway_spec_ports = with_free_ports(spec)
    gateway_spec_ports["spec"]["proxy"]["inboundPort"] = inbound
    gateway_files = compile(source_of(gateway_spec_ports), options).bundle
    assert gateway_files is not None
    gateway = envoy_runner(install_gateway(gateway_files.files, root), name=GATEWAY)
    gateway.wait_for_listener(f"{GATEWAY}|{http_port}")
    with Client(http_port) as client:
        answers = [client.request("/api/items") for _ in range(10)]
    assert [a.status for a in answers] == [200] * 10
    assert app.path_hits("/api/items") == 10
    assert gateway.stat("cluster.api.ssl.handshake") >= 1
    assert api.stat("http.inbound.rbac.allowed") >= 10
    logged = poll_until(lambda: [json.loads(line) for line in api.stdout_text().splitlines()
                                 if line.startswith("{") and '"/api/items"' in line] or None, timeout=5)
    assert {e["downstream_peer_identity"] for e in logged} == {"spiffe://cluster.local/ns/edge/sa/gateway-public"}
