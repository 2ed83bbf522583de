"""Request routes, faults, mirroring, rate limits, status-code retries and cookie hashing, on real
traffic: meshc-built sidecars in real Envoy, loopback backends that name themselves.

Versions of a deployed service are reached through `hosts` (SERVICE/VERSION -> loopback backend), as
a deployment outside Kubernetes would be. Random shares are held to 5 binomial standard deviations;
delays are asserted as lower bounds only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshc.emit import naming
from tests.support.backends import BackendPool
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import LOOPBACK, poll_until
from tests.traffic.conftest import ClientSidecar
from tests.traffic.sidecars import (
    Client,
    binomial_margin,
    caller_spec,
    envoy_files,
    install,
    local_port,
    proxy_port,
    spread,
    static_service,
    with_free_ports,
)

pytestmark = pytest.mark.envoy

VERSIONS = ("v1", "v2", "v3")


def reviews(routes: Sequence[Mapping[str, Any]], weights: Sequence[int] = (100, 0, 0), **fields: Any) -> dict[str, Any]:
    """A deployed service with three versions (all traffic on v1 unless a route says otherwise)."""
    versions = [{"name": n, "image": f"reviews:{n}", "weight": w} for n, w in zip(VERSIONS, weights)]
    return {"name": "reviews", "port": 9080, "versions": versions, "routes": list(routes), **fields}


def version_hosts(pool: BackendPool, service: str = "reviews") -> dict[str, str]:
    return {f"{service}/{b.name}": f"{LOOPBACK}:{b.port}" for b in pool}


def test_header_route_sends_one_user_to_another_version(backend_pool: BackendPoolFactory,
                                                         client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"name": "jason", "match": {"headers": {"end-user": {"exact": "jason"}}}, "version": "v2"}]
    _, client = client_sidecar(caller_spec(reviews(routes)), version_hosts(pool))
    assert spread(client, 20, headers={"end-user": "jason"}) == {"v2": 20}
    assert spread(client, 20, headers={"end-user": "mary"}) == {"v1": 20}
    assert spread(client, 20) == {"v1": 20}


def test_path_regex_query_and_method_matches(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [
        {"name": "numbered", "match": {"path": {"regex": "/ratings/[0-9]+"}}, "version": "v3"},
        {"name": "debug", "match": {"query": {"debug": {"exact": "1"}}}, "version": "v2"},
        {"name": "writes", "match": {"path": {"prefix": "/api"}, "methods": ["POST", "PUT"]}, "version": "v2"},
        {"name": "beta", "match": {"headers": {"x-beta": {"present": True}}, "path": {"exact": "/home"}},
         "version": "v3"},
    ]
    _, client = client_sidecar(caller_spec(reviews(routes)), version_hosts(pool))
    assert client.request("/ratings/42").backend == "v3"
    assert client.request("/ratings/forty-two").backend == "v1"       # the regex must match the whole path
    assert client.request("/ratings/42/x").backend == "v1"
    assert client.request("/any?debug=1").backend == "v2"
    assert client.request("/any?debug=2").backend == "v1"
    assert client.request("/api/items", method="POST").backend == "v2"
    assert client.request("/api/items", method="GET").backend == "v1"
    assert client.request("/home", {"x-beta": "anything"}).backend == "v3"
    assert client.request("/home").backend == "v1"
    assert client.request("/home/x", {"x-beta": "1"}).backend == "v1"  # exact path


def test_weighted_route_splits_by_its_own_weights(backend_pool: BackendPoolFactory,
                                                  client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"match": {"path": {"prefix": "/split"}}, "versions": [{"name": "v2", "weight": 50},
                                                                     {"name": "v3", "weight": 50}]}]
    _, client = client_sidecar(caller_spec(reviews(routes)), version_hosts(pool))
    calls = 200
    seen = spread(client, calls, "/split")
    assert set(seen) == {"v2", "v3"}, seen
    assert abs(seen["v2"] - calls / 2) <= binomial_margin(calls, 0.5), seen
    assert spread(client, 10, "/other") == {"v1": 10}


def test_rewrite_and_header_changes_reach_the_backend(backend_pool: BackendPoolFactory,
                                                      client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"match": {"path": {"prefix": "/old/"}}, "version": "v2", "rewrite": {"prefix": "/new/"},
               "headers": {"request": {"set": {"x-canary": "true"}, "remove": ["x-debug"]},
                           "response": {"set": {"x-route": "old"}, "remove": ["x-backend-extra"]}}}]
    _, client = client_sidecar(caller_spec(reviews(routes)), version_hosts(pool))
    answer = client.request("/old/page?q=1", {"x-debug": "1", "x-canary": "false"})
    assert answer.status == 200 and answer.backend == "v2"
    assert answer.headers["x-route"] == "old"
    seen = pool["v2"].requests[-1]
    assert seen.path == "/new/page?q=1"
    assert seen.headers["x-canary"] == "true"
    assert "x-debug" not in seen.headers


def test_caller_scoped_route_applies_only_in_that_callers_sidecar(
        backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner, tmp_path: Path) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"name": "from-web", "match": {"callers": ["web"]}, "version": "v3"}]
    spec = with_free_ports({
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "traffic"},
        "spec": {"proxy": {"accessLog": "off"}, "security": {"mtls": "off"}, "services": [
            {"name": "web", "image": "web:1", "port": 8080, "upstreams": [{"service": "reviews", "localPort": 1}]},
            {"name": "batch", "image": "batch:1", "port": 8081, "upstreams": [{"service": "reviews", "localPort": 1}]},
            reviews(routes)]}})
    root = tmp_path / "config"
    files = envoy_files(spec, root, version_hosts(pool))
    answers = {}
    for caller in ("web", "batch"):
        # each sidecar has its own admin/stats/inbound ports: start them one after the other
        sidecar = envoy_runner(install(files, caller, root), name=caller)
        port = local_port(spec, caller)
        sidecar.wait_for_listener(naming.outbound_listener_name("reviews", port))
        with Client(port) as client:
            answers[caller] = spread(client, 10)
        sidecar.close()
    assert answers == {"web": {"v3": 10}, "batch": {"v1": 10}}


def test_delay_fault_holds_matching_requests(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"name": "slow", "match": {"headers": {"end-user": {"exact": "jason"}}},
               "fault": {"delay": {"duration": "400ms", "percent": 100}}}]
    sidecar, client = client_sidecar(caller_spec(reviews(routes)), version_hosts(pool))
    for _ in range(3):
        answer = client.request("/", {"end-user": "jason"})
        assert answer.status == 200 and answer.backend == "v1"
        # a lower bound only (never an upper one), less the few ms by which a coarse timer may fire early
        assert answer.elapsed >= 0.39, answer.elapsed
    assert sidecar.stat(f"http.{naming.outbound_listener_name('reviews', local_port_of(client))}.fault.delays_injected") == 3


def local_port_of(client: Client) -> int:
    return client.port


def test_abort_fault_answers_its_status_for_its_share(backend_pool: BackendPoolFactory,
                                                      client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"match": {"path": {"prefix": "/flaky"}}, "fault": {"abort": {"status": 503, "percent": 30}}}]
    sidecar, client = client_sidecar(caller_spec(reviews(routes), {"retries": {"attempts": 0}}), version_hosts(pool))
    calls = 400
    statuses = [client.request("/flaky").status for _ in range(calls)]
    aborted = statuses.count(503)
    assert aborted + statuses.count(200) == calls, set(statuses)
    assert abs(aborted - 0.3 * calls) <= binomial_margin(calls, 0.3), aborted    # 120 +- 46
    assert pool["v1"].hits == calls - aborted                 # an aborted request never leaves the caller
    assert {client.request("/steady").status for _ in range(20)} == {200}


def test_mirror_copies_requests_while_the_caller_gets_the_primary(backend_pool: BackendPoolFactory,
                                                                   client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    pool["v3"].set_status(500)     # the mirror's answers are dropped: its failures change nothing
    routes = [{"name": "shadow", "mirror": {"version": "v3", "percent": 100}}]
    _, client = client_sidecar(caller_spec(reviews(routes)), version_hosts(pool))
    assert spread(client, 30, "/items") == {"v1": 30}
    poll_until(lambda: pool["v3"].hits >= 30, timeout=10)
    assert pool["v3"].hits == 30 and pool["v2"].hits == 0
    copy = pool["v3"].requests[0]
    assert copy.path == "/items"
    assert "-shadow" in copy.headers["host"]                 # Envoy marks the copies (host-shadow:port)


def test_mirror_to_another_service_with_a_share(backend_pool: BackendPoolFactory,
                                                client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=[*VERSIONS, "audit"])
    routes = [{"mirror": {"service": "audit", "percent": 50}}]
    spec = caller_spec(reviews(routes), extra_services=[static_service("audit", [pool["audit"].port])])
    _, client = client_sidecar(spec, version_hosts(pool))
    calls = 200
    assert spread(client, calls) == {"v1": calls}
    poll_until(lambda: abs(pool["audit"].hits - calls / 2) <= binomial_margin(calls, 0.5), timeout=10)


def test_rate_limit_answers_429_past_the_burst(backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner,
                                               tmp_path: Path) -> None:
    (app,) = backend_pool(1)
    api = {"name": "api", "image": "api:1", "port": app.port, "healthCheck": {"path": "/healthz"},
           "rateLimit": {"requests": 1, "per": "1h", "burst": 5}}
    spec = caller_spec(api)
    root = tmp_path / "config"
    sidecar = envoy_runner(install(envoy_files(spec, root), "api", root), name="api")
    sidecar.wait_for_listener(naming.INBOUND_LISTENER)
    with Client(proxy_port(spec, "inboundPort")) as client:
        statuses = [client.request("/work").status for _ in range(8)]
        health = [client.request("/healthz").status for _ in range(10)]
    assert statuses == [200] * 5 + [429] * 3
    assert health == [200] * 10                   # health checks are not counted, and never refused
    assert app.hits == 5
    limited = {k: v for k, v in sidecar.stats("rate_limit").items() if k.endswith("rate_limited")}
    assert list(limited.values()) == [3], limited


def test_retry_on_status_codes_retries_only_those(backend_pool: BackendPoolFactory,
                                                  client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    retries = {"attempts": 3, "retryOn": [503, 429], "backoff": {"baseInterval": "10ms"}}
    sidecar, client = client_sidecar(caller_spec(static_service("api", [backend.port]), {"retries": retries}))
    backend.fail_first(2, status=429)
    assert client.request("/").status == 200
    assert backend.hits == 3
    backend.reset_counts()
    backend.fail_first(1, status=500)              # not listed: answered as it is
    assert client.request("/").status == 500
    assert backend.hits == 1
    assert sidecar.stat("cluster.api.upstream_rq_retry") == 2


def test_route_retries_override_the_callers(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=VERSIONS)
    routes = [{"match": {"path": {"prefix": "/patient"}}, "retries": {"attempts": 4, "retryOn": [502]}}]
    spec = caller_spec(reviews(routes), {"retries": {"attempts": 0}})
    _, client = client_sidecar(spec, version_hosts(pool))
    pool["v1"].fail_first(3, status=502)
    assert client.request("/patient").status == 200
    assert pool["v1"].hits == 4
    pool["v1"].reset_counts()
    pool["v1"].fail_first(1, status=502)
    assert client.request("/other").status == 502
    assert pool["v1"].hits == 1


def test_cookie_hash_keeps_a_client_on_one_backend(backend_pool: BackendPoolFactory,
                                                   client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(4)
    lb = {"policy": "ring_hash", "hashOn": {"cookie": {"name": "session", "ttl": "1h", "path": "/"}}}
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, loadBalancer=lb)))
    first = client.request("/")
    cookie = first.headers["set-cookie"]                 # Envoy hands out the cookie it hashes on
    assert cookie.startswith("session=") and "Max-Age=3600" in cookie
    session = cookie.split(";", 1)[0]
    assert len(spread(client, 30, headers={"cookie": session})) == 1
    homes = {}
    for user in range(20):
        seen = spread(client, 5, headers={"cookie": f"session=user-{user}"})
        assert len(seen) == 1, seen
        homes[user] = next(iter(seen))
    assert len(set(homes.values())) >= 2, homes   # 20 sessions on one of 4 backends: (1/4)^19


def test_query_parameter_hash_keeps_a_key_on_one_backend(backend_pool: BackendPoolFactory,
                                                         client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(4)
    lb = {"policy": "maglev", "hashOn": {"queryParameter": "user"}}
    _, client = client_sidecar(caller_spec(static_service("api", pool.ports, loadBalancer=lb)))
    homes = {user: spread(client, 5, f"/?user=u{user}") for user in range(20)}
    assert all(len(seen) == 1 for seen in homes.values()), homes
    assert len({next(iter(seen)) for seen in homes.values()}) >= 2, homes
