"""Routes and faults on a gRPC service: metadata picks the version, aborts end calls with a gRPC status."""

from __future__ import annotations

import pytest

grpc = pytest.importorskip("grpc")

from tests.traffic.sidecars import binomial_margin, caller_spec
from tests.traffic.test_grpc import EchoClients, GrpcPoolFactory, Mesh, spread
from tests.traffic.test_grpc import echo_clients, grpc_pool, mesh  # noqa: F401 - fixtures

pytestmark = pytest.mark.envoy

UNAVAILABLE = 14


def echo(routes: list[dict[str, object]]) -> dict[str, object]:
    return {"name": "echo", "port": 9000, "protocol": "grpc", "routes": routes,
            "versions": [{"name": "v1", "image": "echo:1", "weight": 100},
                         {"name": "v2", "image": "echo:2", "weight": 0}]}


def test_grpc_metadata_route_picks_the_version(grpc_pool: GrpcPoolFactory, mesh: Mesh,
                                               echo_clients: EchoClients) -> None:
    pool = grpc_pool("v1", "v2")
    routes = [{"name": "canary", "match": {"headers": {"x-variant": {"exact": "canary"}}}, "version": "v2"}]
    client = mesh.start(caller_spec(echo(routes)), hosts={"echo/v1": pool["v1"].address,
                                                          "echo/v2": pool["v2"].address})
    call = echo_clients(client.port)
    assert spread(call, 10, {"x-variant": "canary"}) == {"v2": 10}
    assert spread(call, 10) == {"v1": 10}


def test_grpc_abort_ends_calls_with_the_grpc_status(grpc_pool: GrpcPoolFactory, mesh: Mesh,
                                                    echo_clients: EchoClients) -> None:
    pool = grpc_pool("v1", "v2")
    routes = [{"match": {"headers": {"x-chaos": {"exact": "on"}}},
               "fault": {"abort": {"grpcStatus": UNAVAILABLE, "percent": 50}}}]
    spec = caller_spec(echo(routes), {"retries": {"attempts": 0}})
    client = mesh.start(spec, hosts={"echo/v1": pool["v1"].address, "echo/v2": pool["v2"].address})
    call = echo_clients(client.port)
    calls = 200
    codes = [call.code_of({"x-chaos": "on"}) for _ in range(calls)]
    aborted = codes.count(grpc.StatusCode.UNAVAILABLE)
    assert aborted + codes.count(grpc.StatusCode.OK) == calls, set(codes)
    assert abs(aborted - calls / 2) <= binomial_margin(calls, 0.5), aborted
    assert pool["v1"].hits == calls - aborted
    assert {call.code_of() for _ in range(10)} == {grpc.StatusCode.OK}
