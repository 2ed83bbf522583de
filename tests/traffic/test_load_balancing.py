"""Load-balancing policies, measured on real traffic through a meshc-built sidecar.

Tolerances: Envoy's round robin (weighted or not) is deterministic up to its starting point, so
counts are held to a few requests; random choices (random, least_request between idle hosts,
version splits) are held to 5 binomial standard deviations, which a correct proxy misses about
once in 1.7 million runs.
"""

from __future__ import annotations

import pytest

from tests.support.fixtures import BackendPoolFactory
from tests.traffic.conftest import ClientSidecar
from tests.traffic.sidecars import binomial_margin, caller_spec, spread, static_service

pytestmark = pytest.mark.envoy


def test_round_robin_spreads_evenly(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(3)
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, loadBalancer="round_robin")))
    seen = spread(client, 300)
    assert sorted(seen) == ["b0", "b1", "b2"]
    assert all(abs(count - 100) <= 3 for count in seen.values()), seen


def test_weighted_endpoints_receive_traffic_in_proportion(backend_pool: BackendPoolFactory,
                                                          client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(3)
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, [5, 3, 1], loadBalancer="weighted")))
    requests = 450
    seen = spread(client, requests)
    expected = {"b0": 250, "b1": 150, "b2": 50}
    assert all(abs(seen.get(name, 0) - share) <= 9 for name, share in expected.items()), seen   # 2% of 450


def test_random_reaches_every_backend(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(3)
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, loadBalancer="random")))
    requests = 300
    seen = spread(client, requests)
    assert sorted(seen) == ["b0", "b1", "b2"]
    margin = binomial_margin(requests, 1 / 3)
    assert all(abs(count - requests / 3) <= margin for count in seen.values()), seen


def test_least_request_spreads_over_idle_backends(backend_pool: BackendPoolFactory,
                                                  client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(3)
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, loadBalancer="least_request")))
    requests = 300
    seen = spread(client, requests)
    assert sorted(seen) == ["b0", "b1", "b2"]
    assert all(abs(count - requests / 3) <= binomial_margin(requests, 1 / 3) for count in seen.values()), seen


def test_version_split_lands_within_tolerance(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=["v1", "v2"])
    api = {"name": "api", "port": 9000, "versions": [{"name": "v1", "image": "api:1", "weight": 90},
                                                     {"name": "v2", "image": "api:2", "weight": 10}]}
    hosts = {"api/v1": f"127.0.0.1:{pool['v1'].port}", "api/v2": f"127.0.0.1:{pool['v2'].port}"}
    _, client = client_sidecar(caller_spec(api), hosts=hosts)
    requests = 600
    seen = spread(client, requests)
    assert abs(seen.get("v2", 0) - 0.1 * requests) <= binomial_margin(requests, 0.1), seen   # 60 +- 37
    assert seen.get("v1", 0) + seen.get("v2", 0) == requests


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
def test_hash_policy_keeps_a_header_value_on_one_backend(policy: str, backend_pool: BackendPoolFactory,
                                                        client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(3)
    lb = {"policy": policy, "hashOn": {"header": "x-user-id"}}
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, loadBalancer=lb)))
    homes: dict[str, set[str]] = {}
    for _round in range(4):
        for user in range(30):
            answer = client.request("/", {"x-user-id": f"user-{user}"})
            assert answer.status == 200
            homes.setdefault(f"user-{user}", set()).add(str(answer.backend))
    assert all(len(backends) == 1 for backends in homes.values()), homes
    # 30 users all hashed onto one of 3 backends would happen with probability ~3e-14
    assert len(set().union(*homes.values())) >= 2
