"""Zero trust through real Envoy pairs on loopback: caller sidecar -> callee sidecar -> callee app,
with certificates made by `meshc ca` and sidecars built with `--tls-dir`-style directories.

What is proven: a declared caller gets through over mTLS and the callee logs its SPIFFE ID; a mesh
identity that is not a declared caller gets 403 (HTTP) or a closed connection (tcp); plaintext is
refused in strict mode and accepted but counted in permissive mode; a certificate from another CA
is refused; a callee presenting the wrong identity is refused by the caller; certificates renamed
into place (also the kubelet's `..data` link swap) are used by new connections without a restart;
gRPC and health checks work over mTLS; TLS origination sends the right SNI and Host.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from meshc import certs
from meshc.cli import main as meshc_main
from tests.support.httpclient import http_request
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import LOOPBACK, free_port, poll_until
from tests.traffic.sidecars import Client, envoy_files, Spec, install, local_port, proxy_port, with_free_ports

pytestmark = pytest.mark.envoy

NAMESPACE = "zt"
CLIENT_ID = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/client"


def mesh(app_port: int, *, protocol: str = "http", mode: str = "strict", **api: Any) -> dict[str, Any]:
    """`client` calls `api`; `intruder` is a mesh service with an identity that calls nobody."""
    return {
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": NAMESPACE},
        "spec": {
            "proxy": {"accessLog": "json"},
            "security": {"mtls": mode},
            "analysis": {"entryPoints": ["client", "intruder"]},
            "services": [
                {"name": "client", "image": "client:1", "port": 8080,
                 "upstreams": [{"service": "api", "localPort": 1, "timeout": "2s",
                                "retries": {"attempts": 0}}]},
                {"name": "intruder", "image": "intruder:1", "port": 8081},
                {"name": "api", "image": "api:1", "port": app_port, "protocol": protocol, **api},
            ],
        },
    }


class Pair:
    """The certificates of a mesh, and its client and api sidecars on their own ports."""

    def __init__(self, root: Path, envoy_runner: EnvoyRunner, spec: dict[str, Any]) -> None:
        self.root, self.runner = root, envoy_runner
        self.ca, self.tls = root / "ca", root / "tls"
        self.caller, self.callee = with_free_ports(spec), with_free_ports(spec)
        assert meshc_main(["ca", "init", str(self.ca)]) == 0
        spec_file = root / "mesh.yaml"
        spec_file.write_text(json.dumps(spec))
        assert meshc_main(["ca", "issue", str(spec_file), "--ca", str(self.ca), "-o", str(self.tls)]) == 0
        self.inbound = proxy_port(self.callee, "inboundPort")

    def start_api(self) -> Any:
        files = envoy_files(self.callee, self.root / "config", tls_root=self.tls)
        return self.runner(install(files, "api", self.root / "config"), name="api")

    def start_client(self) -> Any:
        files = envoy_files(self.caller, self.root / "config", {"api": f"{LOOPBACK}:{self.inbound}"}, self.tls)
        return self.runner(install(files, "client", self.root / "config"), name="client")

    def tls_client(self, identity: str | None = "intruder", ca: Path | None = None) -> ssl.SSLContext:
        """A TLS client context as a sidecar of `identity` would have (no certificate when None)."""
        context = ssl.create_default_context(cafile=str(self.tls / "api" / "ca.crt"))
        context.check_hostname = False   # mesh peers are named by URI SAN, not host name
        if identity is not None:
            directory = (ca or self.tls) / identity
            context.load_cert_chain(str(directory / "tls.crt"), str(directory / "tls.key"))
        return context


@pytest.fixture
def pair_of(tmp_path: Path, envoy_runner: EnvoyRunner) -> Iterator[Any]:
    yield lambda spec: Pair(tmp_path, envoy_runner, spec)


def raw_http(port: int, context: ssl.SSLContext | None, path: str = "/") -> tuple[int | None, bytes]:
    """One HTTP/1.1 request on a new connection; (status or None if the connection died, peer cert)."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as plain:
        conn: socket.socket = context.wrap_socket(plain) if context else plain
        peer = (conn.getpeercert(binary_form=True) or b"") if isinstance(conn, ssl.SSLSocket) else b""
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, peer


def refused(port: int, context: ssl.SSLContext | None) -> bool:
    """True when the listener will not serve this client: handshake refused or connection closed unanswered."""
    try:
        status, _ = raw_http(port, context)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return status is None


# --- HTTP over mTLS -----------------------------------------------------------------------

def test_declared_caller_gets_through_and_is_logged_by_its_spiffe_id(
        pair_of: Any, backend_pool: BackendPoolFactory) -> None:
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port, healthCheck={"path": "/healthz", "interval": "200ms", "timeout": "100ms"}))
    api = pair.start_api()
    client = pair.start_client()
    client.wait_for_cluster_healthy("api")      # health checks cross the callee's mTLS listener too
    with Client(local_port(pair.caller)) as http:
        answers = [http.request("/hello").status for _ in range(20)]
    assert answers == [200] * 20
    assert app.path_hits("/hello") == 20
    entries = poll_until(lambda: [e for e in _log(api) if e.get("path") == "/hello"] or None, timeout=5)
    assert {e["downstream_peer_identity"] for e in entries} == {CLIENT_ID}
    assert api.stat("listener.0.0.0.0_" + str(pair.inbound) + ".ssl.handshake") or \
        api.stats("ssl.handshake$")
    assert client.stat("cluster.api.ssl.handshake") >= 1
    assert api.stat("http.inbound.rbac.allowed") >= 20


def test_mesh_identity_that_is_not_a_declared_caller_gets_403(pair_of: Any, backend_pool: BackendPoolFactory) -> None:
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port))
    api = pair.start_api()
    status, _ = raw_http(pair.inbound, pair.tls_client("intruder"))
    assert status == 403
    status, _ = raw_http(pair.inbound, pair.tls_client("client"))
    assert status == 200
    assert app.hits == 1                           # the intruder never reached the app
    assert api.stat("http.inbound.rbac.denied") == 1


def test_a_sidecar_whose_service_is_not_a_declared_caller_gets_403(
        pair_of: Any, backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner) -> None:
    """intruder's sidecar is built from a spec in which it calls api (a stale or forged config), with
    its real mesh certificate; api's sidecar is built from the reviewed spec, where it does not."""
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port))
    pair.start_api()
    forged = copy.deepcopy(pair.caller)
    intruder = next(s for s in forged["spec"]["services"] if s["name"] == "intruder")
    intruder["upstreams"] = [{"service": "api", "localPort": free_port()}]
    files = envoy_files(forged, pair.root / "config", {"api": f"{LOOPBACK}:{pair.inbound}"}, pair.tls)
    sidecar = envoy_runner(install(files, "intruder", pair.root / "config"), name="intruder")
    sidecar.wait_for_listener(f"outbound|{intruder['upstreams'][0]['localPort']}|api")
    with Client(intruder["upstreams"][0]["localPort"]) as http:
        answer = http.request("/secret")
    assert answer.status == 403 and b"RBAC" in answer.body
    assert sidecar.stat("cluster.api.ssl.handshake") >= 1      # mTLS itself succeeded: the identity is refused
    assert app.hits == 0


def test_strict_refuses_plaintext_and_certificates_of_another_ca(
        pair_of: Any, backend_pool: BackendPoolFactory, tmp_path: Path) -> None:
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port))
    pair.start_api()
    other = tmp_path / "other"
    assert meshc_main(["ca", "init", str(other / "ca")]) == 0
    assert meshc_main(["ca", "issue", str(tmp_path / "mesh.yaml"), "--ca", str(other / "ca"),
                       "-o", str(other / "tls")]) == 0
    assert refused(pair.inbound, None)                                   # plaintext
    assert refused(pair.inbound, pair.tls_client(None))                  # TLS without a client certificate
    assert refused(pair.inbound, pair.tls_client("client", ca=other / "tls"))   # the right name, the wrong CA
    assert app.hits == 0
    assert raw_http(pair.inbound, pair.tls_client("client"))[0] == 200   # the listener itself is fine


def test_caller_refuses_a_callee_presenting_another_identity(pair_of: Any, backend_pool: BackendPoolFactory) -> None:
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port))
    for name in ("tls.crt", "tls.key"):      # api's sidecar now presents intruder's (valid, mesh-signed) identity
        certs.write_file(pair.tls / "api" / name, (pair.tls / "intruder" / name).read_bytes())
    pair.start_api()
    client = pair.start_client()
    with Client(local_port(pair.caller)) as http:
        assert http.request("/").status == 503
    assert app.hits == 0
    assert client.wait_for_stat("cluster.api.ssl.fail_verify_san") >= 1


def test_permissive_accepts_plaintext_and_counts_what_strict_would_deny(
        pair_of: Any, backend_pool: BackendPoolFactory) -> None:
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port, mode="permissive"))
    api = pair.start_api()
    client = pair.start_client()
    assert raw_http(pair.inbound, None)[0] == 200                         # plaintext: served
    assert raw_http(pair.inbound, pair.tls_client("intruder"))[0] == 200  # undeclared: served
    with Client(local_port(pair.caller)) as http:
        assert http.request("/").status == 200                            # the declared caller, over mTLS
    assert app.hits == 3
    assert client.stat("cluster.api.ssl.handshake") >= 1
    assert api.stat("http.inbound.rbac.meshc_authz.shadow_denied") == 2
    assert api.stat("http.inbound.rbac.meshc_authz.shadow_allowed") == 1
    stats_port = proxy_port(pair.callee, "statsPort")
    metrics = http_request(f"http://{LOOPBACK}:{stats_port}/stats/prometheus").text   # what Prometheus scrapes
    assert re.search(r'^envoy_http_rbac_shadow_denied\{envoy_rbac_http_prefix="meshc_authz",.*\} 2$', metrics, re.M), \
        [line for line in metrics.splitlines() if "rbac" in line]


# --- tcp ----------------------------------------------------------------------------------

class EchoServer:
    """A tcp backend that answers every chunk with the same bytes."""

    def __init__(self) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


def _echo_through(port: int, context: ssl.SSLContext | None) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as plain:
        try:
            conn = context.wrap_socket(plain) if context else plain
            conn.sendall(b"ping")
            return conn.recv(100)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return b""


def test_tcp_service_closes_connections_of_undeclared_callers(pair_of: Any) -> None:
    echo = EchoServer()
    try:
        pair = pair_of(mesh(echo.port, protocol="tcp"))
        api = pair.start_api()
        client = pair.start_client()
        client.wait_for_listener(f"outbound|{local_port(pair.caller)}|api")
        assert _echo_through(local_port(pair.caller), None) == b"ping"     # declared caller, over mTLS
        assert _echo_through(pair.inbound, pair.tls_client("intruder")) == b""   # refused in the handshake
        assert echo.connections == 1                                         # the app never saw the intruder
        assert api.stat("listener.0.0.0.0_" + str(pair.inbound) + ".ssl.fail_verify_san") == 1
        assert api.stat("inbound.rbac.allowed") == 1
    finally:
        echo.close()


def test_tcp_permissive_accepts_plaintext_and_counts_it(pair_of: Any) -> None:
    echo = EchoServer()
    try:
        pair = pair_of(mesh(echo.port, protocol="tcp", mode="permissive"))
        api = pair.start_api()
        client = pair.start_client()
        client.wait_for_listener(f"outbound|{local_port(pair.caller)}|api")
        assert _echo_through(pair.inbound, None) == b"ping"                 # plaintext: served
        assert _echo_through(local_port(pair.caller), None) == b"ping"      # the declared caller, over mTLS
        assert api.wait_for_stat("inbound.rbac.meshc_authz.shadow_denied") == 1
        assert api.stat("inbound.rbac.meshc_authz.shadow_allowed") == 1
        assert echo.connections == 2
    finally:
        echo.close()


# --- certificates replaced on disk --------------------------------------------------------

def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def test_renewed_certificate_is_used_by_new_connections_without_restart(
        pair_of: Any, backend_pool: BackendPoolFactory, tmp_path: Path) -> None:
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port))
    api = pair.start_api()
    first = _serial(raw_http(pair.inbound, pair.tls_client("client"))[1])
    pid = api.process.pid
    context_updates = f"listener.0.0.0.0_{pair.inbound}.server_ssl_socket_factory.ssl_context_update_by_sds"
    updates = api.stat(context_updates) or 0
    spec_file = tmp_path / "mesh.yaml"
    assert meshc_main(["ca", "issue", str(spec_file), "--ca", str(pair.ca), "-o", str(pair.tls),
                       "--service", "api"]) == 0                       # renewal: files renamed into place
    renewed = _serial(x509.load_pem_x509_certificate((pair.tls / "api" / "tls.crt").read_bytes())
                      .public_bytes(Encoding.DER))
    assert renewed != first
    poll_until(lambda: _serial(raw_http(pair.inbound, pair.tls_client("client"))[1]) == renewed, timeout=10,
               message="api's sidecar kept serving its old certificate")
    assert api.running and api.process.pid == pid                      # the same Envoy, never restarted
    assert (api.stat(context_updates) or 0) > updates                  # the TLS context was rebuilt in place


def test_kubelet_style_link_swap_is_picked_up(pair_of: Any, backend_pool: BackendPoolFactory, tmp_path: Path) -> None:
    """A Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>; an update renames ..data."""
    (app,) = backend_pool(names=["api-app"])
    pair = pair_of(mesh(app.port))
    api_dir = pair.tls / "api"
    _as_secret_volume(api_dir, "..v1")
    pair.start_api()
    first = _serial(raw_http(pair.inbound, pair.tls_client("client"))[1])
    fresh = tmp_path / "fresh"
    assert meshc_main(["ca", "issue", str(tmp_path / "mesh.yaml"), "--ca", str(pair.ca), "-o", str(fresh),
                       "--service", "api"]) == 0
    version = api_dir / "..v2"
    version.mkdir()
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (version / name).write_bytes((fresh / "api" / name).read_bytes())
    os.symlink("..v2", api_dir / "..data_tmp")
    os.replace(api_dir / "..data_tmp", api_dir / "..data")                 # the kubelet's atomic swap
    poll_until(lambda: _serial(raw_http(pair.inbound, pair.tls_client("client"))[1]) != first, timeout=10,
               message="the swapped certificate was not picked up")


def _as_secret_volume(directory: Path, version: str) -> None:
    (directory / version).mkdir()
    for name in ("tls.crt", "tls.key", "ca.crt"):
        os.replace(directory / name, directory / version / name)
        os.symlink(f"..data/{name}", directory / name)
    os.symlink(version, directory / "..data")


# --- gRPC over mTLS -----------------------------------------------------------------------

def test_grpc_over_mtls_with_health_checks(pair_of: Any) -> None:
    pytest.importorskip("grpc")
    from tests.support.grpc_backend import EchoClient, GrpcBackend

    backend = GrpcBackend("api-grpc").start()
    try:
        pair = pair_of(mesh(backend.port, protocol="grpc", healthCheck={
            "path": "/grpc.health.v1.Health/Check", "interval": "200ms", "timeout": "150ms"}))
        pair.start_api()
        client = pair.start_client()
        client.wait_for_cluster_healthy("api")
        with EchoClient(local_port(pair.caller)) as grpc_client:
            assert [grpc_client.call() for _ in range(5)] == ["api-grpc"] * 5
        assert backend.hits == 5 and backend.health_checks >= 1
        assert client.stat("cluster.api.ssl.handshake") >= 1
    finally:
        backend.stop()


# --- TLS origination ----------------------------------------------------------------------

class TlsServer:
    """An HTTPS server on loopback with a certificate for `name`; it records SNI and Host."""

    def __init__(self, directory: Path, name: str) -> None:
        authority = certs.new_authority("test external CA")
        certs.write_authority(authority, directory)
        cert, key = certs.issue(authority, f"spiffe://external/{name}", certs.CA_VALIDITY, dns_names=(name,))
        certs.write_workload(directory / "server", cert, key, authority.certificate_pem)
        self.ca_file = directory / "ca.crt"
        self.server_names: list[str | None] = []
        self.hosts: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(directory / "server" / "tls.crt"), str(directory / "server" / "tls.key"))
        context.sni_callback = lambda sock, server_name, ctx: self.server_names.append(server_name)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hosts.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_originating_client(server: TlsServer, tmp_path: Path, envoy_runner: EnvoyRunner) -> Spec:
    """A client sidecar whose upstream `stripe` is the external TLS server, expected as
    api.example.test; returns the spec once its outbound listener is up."""
    spec = with_free_ports({
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": NAMESPACE},
        "spec": {"security": {"mtls": "off"}, "services": [
            {"name": "client", "image": "client:1", "port": 8080,
             "upstreams": [{"service": "stripe", "localPort": 1}]},
            {"name": "stripe", "port": server.port, "endpoints": [{"address": LOOPBACK, "port": server.port}],
             "tls": {"sni": "api.example.test", "caBundle": str(server.ca_file)}},
        ]}})
    files = envoy_files(spec, tmp_path / "config")
    client = envoy_runner(install(files, "client", tmp_path / "config"), name="client")
    client.wait_for_listener(f"outbound|{local_port(spec)}|stripe")
    return spec


def test_tls_origination_sends_the_external_name_as_sni_and_host(tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    server = TlsServer(tmp_path / "external", "api.example.test")
    try:
        spec = start_originating_client(server, tmp_path, envoy_runner)
        with Client(local_port(spec)) as http:
            answer = http.request("/v1/charges", headers={"Host": "localhost"})
        assert answer.status == 200 and answer.body == b"ok"
        assert server.server_names == ["api.example.test"]
        assert server.hosts == ["api.example.test"]
    finally:
        server.close()


def test_tls_origination_refuses_a_server_with_another_name(tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    server = TlsServer(tmp_path / "external", "evil.example.test")
    try:
        spec = start_originating_client(server, tmp_path, envoy_runner)
        with Client(local_port(spec)) as http:
            assert http.request("/").status == 503
        assert server.hosts == []
    finally:
        server.close()


def _log(envoy: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in envoy.stdout_text().splitlines() if line.startswith("{")]
