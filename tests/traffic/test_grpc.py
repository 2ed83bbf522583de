"""gRPC and plain HTTP/2 through meshc-built sidecars: real grpcio servers and clients, real Envoy.

Each mesh is compiled by `meshc.pipeline.compile` with `BuildOptions(config_dir, envoy_hosts)`, as a
deployment outside Kubernetes would be. The test's client speaks gRPC (HTTP/2) to the caller's
outbound listener; the backends are grpcio servers, or an h2c server that refuses HTTP/1.1, so an
answer proves the upstream hop was HTTP/2. Random choices are held to 5 binomial standard deviations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_health")
pytest.importorskip("h2")

from meshc.emit import naming
from meshc.pipeline import BuildOptions, compile
from tests.support.envoy import EnvoyProcess
from tests.support.fixtures import EnvoyRunner
from tests.support.grpc_backend import EchoClient, GrpcPool, H2Backend
from tests.support.ports import LOOPBACK, free_port, poll_until
from tests.traffic.sidecars import (
    CONFIG_DIR_TEMPLATE,
    Client,
    binomial_margin,
    caller_spec,
    install,
    local_port,
    proxy_port,
    source_of,
    static_service,
)

pytestmark = pytest.mark.envoy

QUICK_BACKOFF = {"baseInterval": "10ms", "maxInterval": "20ms"}
# `path` is required by the spec; for a grpc service Envoy asks grpc.health.v1.Health/Check instead.
FAST_CHECK = {"path": "/grpc.health.v1.Health/Check", "interval": "100ms", "timeout": "80ms",
              "healthyThreshold": 1, "unhealthyThreshold": 1}
FAST = 0.25   # seconds: an answer Envoy gives without waiting on anything (loopback, one worker)

GrpcPoolFactory = Callable[..., GrpcPool]          # grpc_pool("b0", "b1")
EchoClients = Callable[[int], EchoClient]          # echo_clients(port)


@dataclass(frozen=True)
class Sidecar:
    envoy: EnvoyProcess
    port: int            # the outbound listener the app would call


class Mesh:
    """Compiles specs with meshc's pipeline and starts sidecars from the result, on one machine."""

    def __init__(self, root: Path, envoy_runner: EnvoyRunner) -> None:
        self.root = root
        self.envoy_runner = envoy_runner

    def files(self, spec: Mapping[str, Any], hosts: Mapping[str, str] | None = None) -> Mapping[str, bytes]:
        options = BuildOptions(config_dir=str(self.root / CONFIG_DIR_TEMPLATE), envoy_hosts=dict(hosts or {}))
        compiled = compile(source_of(spec), options)
        errors = [str(d) for d in compiled.diagnostics if d.is_error]
        assert compiled.bundle is not None, "\n".join(errors)
        return compiled.bundle.files

    def start(self, spec: Mapping[str, Any], service: str = "client",
              hosts: Mapping[str, str] | None = None) -> Sidecar:
        """Start `service`'s sidecar; when it calls something, wait for its first outbound listener."""
        envoy = self.envoy_runner(install(self.files(spec, hosts), service, self.root), name=service)
        upstreams = next(s for s in spec["spec"]["services"] if s["name"] == service).get("upstreams", [])
        if not upstreams:
            envoy.wait_for_listener(naming.INBOUND_LISTENER)
            return Sidecar(envoy, 0)
        envoy.wait_for_listener(naming.outbound_listener_name(upstreams[0]["service"], upstreams[0]["localPort"]))
        return Sidecar(envoy, local_port(spec, service))


@pytest.fixture
def mesh(tmp_path: Path, envoy_runner: EnvoyRunner) -> Mesh:
    return Mesh(tmp_path / "config", envoy_runner)


@pytest.fixture
def grpc_pool() -> Iterator[GrpcPoolFactory]:
    """`grpc_pool("b0", "b1")` returns started gRPC backends, stopped at teardown."""
    pools: list[GrpcPool] = []

    def start(*names: str) -> GrpcPool:
        pool = GrpcPool(names)
        pools.append(pool)
        return pool.start()

    try:
        yield start
    finally:
        for pool in pools:
            pool.stop()


@pytest.fixture
def echo_clients() -> Iterator[EchoClients]:
    """`echo_clients(port)` returns a gRPC client to 127.0.0.1:port, closed at teardown."""
    clients: list[EchoClient] = []

    def open_(port: int) -> EchoClient:
        client = EchoClient(port)
        clients.append(client)
        return client

    try:
        yield open_
    finally:
        for client in clients:
            client.close()


def counter(envoy: EnvoyProcess, name: str) -> int:
    """A cluster stat's value. Envoy creates every cluster counter with the cluster, so a missing one
    is a wrong name (which would make `== 0` pass for nothing)."""
    value = envoy.stat(name)
    assert value is not None, f"{envoy.name} has no stat {name}"
    return value


def grpc_service(name: str, ports: Sequence[int], **policies: Any) -> dict[str, Any]:
    return static_service(name, ports, protocol="grpc", **policies)


def spread(client: EchoClient, calls: int, metadata: Mapping[str, str] | None = None) -> dict[str, int]:
    """Make `calls` gRPC calls (each must succeed); how many each backend answered."""
    seen: dict[str, int] = {}
    for _ in range(calls):
        backend = client.call(metadata)
        seen[backend] = seen.get(backend, 0) + 1
    return seen


# --- the path ------------------------------------------------------------------------------

def grpc_mesh(app_port: int) -> dict[str, Any]:
    """`client` calls the deployed gRPC service `echo` (one replica on loopback)."""
    echo = {"name": "echo", "image": "echo:1", "port": app_port, "protocol": "grpc", "healthCheck": FAST_CHECK}
    return caller_spec(echo, {"timeout": "2s"})


def test_grpc_calls_cross_both_sidecars_over_http2(grpc_pool: GrpcPoolFactory, mesh: Mesh, echo_clients: EchoClients) -> None:
    """client app -> client sidecar -> echo sidecar (inbound) -> echo app, gRPC end to end; the
    caller's gRPC health checks cross the callee's sidecar too."""
    pool = grpc_pool("echo-app")
    caller, callee = grpc_mesh(pool.ports[0]), grpc_mesh(pool.ports[0])   # each sidecar gets ports of its own
    echo = mesh.start(callee, "echo")
    client = mesh.start(caller, hosts={"echo": f"{LOOPBACK}:{proxy_port(callee, 'inboundPort')}"})
    client.envoy.wait_for_cluster_healthy("echo")

    echo_client = echo_clients(client.port)
    assert spread(echo_client, 50, {"x-request-tag": "through"}) == {"echo-app": 50}
    calls = pool["echo-app"].calls
    assert len(calls) == 50
    assert calls[-1].metadata["x-request-tag"] == "through"          # gRPC metadata crosses as h2 headers
    assert calls[-1].metadata["x-envoy-attempt-count"] == "1"      # the caller's route, seen at the app
    assert counter(client.envoy, "cluster.echo.upstream_cx_http2_total") >= 1
    assert counter(client.envoy, "cluster.echo.upstream_cx_http1_total") == 0
    assert counter(echo.envoy, "cluster.local_app.upstream_cx_http2_total") >= 1
    assert counter(client.envoy, "cluster.echo.upstream_rq_200") == 50
    assert pool["echo-app"].health_checks >= 1                       # grpc_health_check crossed both sidecars

# --- load balancing ------------------------------------------------------------------------

def test_ring_hash_keeps_each_user_on_one_backend(grpc_pool: GrpcPoolFactory, mesh: Mesh, echo_clients: EchoClients) -> None:
    pool = grpc_pool("b0", "b1", "b2")
    lb = {"policy": "ring_hash", "hashOn": {"header": "x-user-id"}}
    client = mesh.start(caller_spec(grpc_service("echo", pool.ports, loadBalancer=lb)))
    echo = echo_clients(client.port)
    homes: dict[str, set[str]] = {}
    for _ in range(4):
        for user in range(30):
            homes.setdefault(f"user-{user}", set()).add(echo.call({"x-user-id": f"user-{user}"}))
    assert all(len(backends) == 1 for backends in homes.values()), homes
    # 30 users all hashed onto one of 3 backends would happen with probability ~3e-14
    assert len(set().union(*homes.values())) >= 2, homes
    assert sum(b.hits for b in pool) == 120


def test_ring_hash_keeps_each_user_on_one_version(grpc_pool: GrpcPoolFactory, mesh: Mesh, echo_clients: EchoClients) -> None:
    """With versions, the version is chosen from the same hash as the host: a user is not moved
    between versions (and so between hosts) from one call to the next."""
    pool = grpc_pool("v1", "v2")
    lb = {"policy": "ring_hash", "hashOn": {"header": "x-user-id"}}
    echo = {"name": "echo", "port": 9000, "protocol": "grpc", "loadBalancer": lb,
            "versions": [{"name": "v1", "image": "echo:1", "weight": 50},
                         {"name": "v2", "image": "echo:2", "weight": 50}]}
    client = mesh.start(caller_spec(echo), hosts={"echo/v1": pool["v1"].address, "echo/v2": pool["v2"].address})
    call = echo_clients(client.port).call
    homes: dict[str, set[str]] = {}
    for _ in range(4):
        for user in range(30):
            homes.setdefault(f"user-{user}", set()).add(call({"x-user-id": f"user-{user}"}))
    assert all(len(versions) == 1 for versions in homes.values()), homes
    assert set().union(*homes.values()) == {"v1", "v2"}, homes    # all 30 on one side: ~2e-9


def test_version_weights_split_grpc_calls(grpc_pool: GrpcPoolFactory, mesh: Mesh, echo_clients: EchoClients) -> None:
    pool = grpc_pool("v1", "v2")
    echo = {"name": "echo", "port": 9000, "protocol": "grpc",
            "versions": [{"name": "v1", "image": "echo:1", "weight": 80},
                         {"name": "v2", "image": "echo:2", "weight": 20}]}
    hosts = {"echo/v1": pool["v1"].address, "echo/v2": pool["v2"].address}
    client = mesh.start(caller_spec(echo), hosts=hosts)
    calls = 400
    seen = spread(echo_clients(client.port), calls)
    assert seen.get("v1", 0) + seen.get("v2", 0) == calls, seen
    assert abs(seen.get("v2", 0) - 0.2 * calls) <= binomial_margin(calls, 0.2), seen   # 80 +- 40
    assert counter(client.envoy, "cluster.echo|v2.upstream_cx_http2_total") >= 1


# --- resilience ----------------------------------------------------------------------------

def test_retry_on_unavailable_recovers_the_call(grpc_pool: GrpcPoolFactory, mesh: Mesh, echo_clients: EchoClients) -> None:
    pool = grpc_pool("b0")
    retries = {"attempts": 2, "perTryTimeout": "1s", "retryOn": ["unavailable"], "backoff": QUICK_BACKOFF}
    client = mesh.start(caller_spec(grpc_service("echo", pool.ports), {"retries": retries}))
    pool["b0"].fail_first(1)
    assert echo_clients(client.port).call() == "b0"
    assert [c.metadata.get("x-envoy-attempt-count") for c in pool["b0"].calls] == ["1", "2"]
    assert counter(client.envoy, "cluster.echo.upstream_rq_retry") == 1


@pytest.mark.parametrize(("retry_on", "code"), [
    (["unavailable"], "INTERNAL"),     # a gRPC code not listed
    (["5xx"], "UNAVAILABLE"),          # gRPC status travels in an HTTP 200: `5xx` never sees it
])
def test_retries_leave_unlisted_grpc_codes_alone(retry_on: list[str], code: str, grpc_pool: GrpcPoolFactory,
                                                 mesh: Mesh, echo_clients: EchoClients) -> None:
    pool = grpc_pool("b0")
    retries = {"attempts": 2, "perTryTimeout": "1s", "retryOn": retry_on, "backoff": QUICK_BACKOFF}
    client = mesh.start(caller_spec(grpc_service("echo", pool.ports), {"retries": retries}))
    pool["b0"].fail_first(1, grpc.StatusCode[code])
    assert echo_clients(client.port).code_of() is grpc.StatusCode[code]
    assert pool["b0"].hits == 1
    assert counter(client.envoy, "cluster.echo.upstream_rq_retry") == 0


def test_fail_fast_does_not_retry_grpc(grpc_pool: GrpcPoolFactory, mesh: Mesh, echo_clients: EchoClients) -> None:
    pool = grpc_pool("b0")
    client = mesh.start(caller_spec(grpc_service("echo", pool.ports), {"failurePolicy": "fail_fast"}))
    pool["b0"].fail_first(1)
    echo = echo_clients(client.port)
    assert echo.code_of() is grpc.StatusCode.UNAVAILABLE
    assert pool["b0"].hits == 1
    assert counter(client.envoy, "cluster.echo.upstream_rq_retry") == 0
    assert echo.call() == "b0"                  # the next call is served: nothing else went wrong


def test_fail_fast_answers_unavailable_at_once_when_the_backend_is_down(mesh: Mesh, echo_clients: EchoClients) -> None:
    """Envoy's own 503 (no connection) reaches a gRPC client as the gRPC status UNAVAILABLE."""
    nobody = free_port()
    client = mesh.start(caller_spec(grpc_service("echo", [nobody]), {"failurePolicy": "fail_fast"}))
    echo = echo_clients(client.port)
    echo.wait_ready()
    started = time.monotonic()
    codes = [echo.code_of() for _ in range(5)]
    elapsed = time.monotonic() - started
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 5
    assert elapsed < 5 * FAST, elapsed
    assert counter(client.envoy, "cluster.echo.upstream_rq_retry") == 0


def test_grpc_health_check_takes_a_not_serving_backend_out_of_rotation(grpc_pool: GrpcPoolFactory, mesh: Mesh,
                                                                       echo_clients: EchoClients) -> None:
    """Envoy merges health changes for up to 1 s (update_merge_window), so the test waits on the
    calls themselves: none for the sick backend, then it is back."""
    pool = grpc_pool("steady", "sick")
    client = mesh.start(caller_spec(grpc_service("echo", pool.ports, healthCheck=FAST_CHECK)))
    client.envoy.wait_for_cluster_healthy("echo", hosts=2)
    echo = echo_clients(client.port)
    assert set(spread(echo, 20)) == {"steady", "sick"}
    pool["sick"].set_serving(False)
    poll_until(lambda: [h.port for h in client.envoy.cluster_hosts("echo") if h.healthy] == [pool["steady"].port],
               timeout=5)
    poll_until(lambda: spread(echo, 4) == {"steady": 4}, timeout=5, interval=0.1)
    pool["sick"].reset_counts()
    assert spread(echo, 40) == {"steady": 40}
    assert pool["sick"].hits == 0
    assert counter(client.envoy, "cluster.echo.health_check.failure") >= 1
    assert pool["sick"].health_checks >= 1
    pool["sick"].set_serving(True)              # and it comes back
    poll_until(lambda: "sick" in spread(echo, 4), timeout=5, interval=0.1)
    assert all(h.healthy for h in client.envoy.cluster_hosts("echo"))


# --- plain HTTP/2 --------------------------------------------------------------------------

def test_http2_service_is_reached_over_http2(mesh: Mesh) -> None:
    """An h2c app (HTTP/2 only) behind its own sidecar: the caller's app speaks HTTP/1.1 to its
    sidecar, and both hops to the callee (sidecar to sidecar, sidecar to app) are HTTP/2."""
    with H2Backend("h2-app") as app:
        check = {"path": "/healthz", "interval": "100ms", "timeout": "80ms", "healthyThreshold": 1}
        api = {"name": "api", "image": "api:1", "port": app.port, "protocol": "http2", "healthCheck": check}
        caller, callee = caller_spec(api, {"timeout": "2s"}), caller_spec(api, {"timeout": "2s"})
        api_sidecar = mesh.start(callee, "api")
        client = mesh.start(caller, hosts={"api": f"{LOOPBACK}:{proxy_port(callee, 'inboundPort')}"})
        client.envoy.wait_for_cluster_healthy("api")          # an HTTP/2 health check, through both hops
        assert app.health_checks >= 1
        with Client(client.port) as http:
            answers = [http.request("/items") for _ in range(30)]
        assert {(a.status, a.body) for a in answers} == {(200, b"backend=h2-app protocol=HTTP/2")}
        assert app.hits == 30
        assert counter(client.envoy, "cluster.api.upstream_cx_http2_total") >= 1
        assert counter(client.envoy, "cluster.api.upstream_cx_http1_total") == 0
        assert counter(api_sidecar.envoy, "cluster.local_app.upstream_cx_http2_total") >= 1
        assert [r.headers[":path"] for r in app.requests] == ["/items"] * 30
        assert app.connections <= 2     # HTTP/2 multiplexes: requests and checks share the callee sidecar's connection
