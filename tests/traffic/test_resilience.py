"""Retries, timeouts, outlier detection, active health checks and fail_fast, on real traffic."""

from __future__ import annotations

import threading

import pytest

from tests.support.fixtures import BackendPoolFactory
from tests.support.ports import free_port, poll_until
from tests.traffic.conftest import ClientSidecar
from tests.traffic.sidecars import Answer, Client, caller_spec, spread, static_service

pytestmark = pytest.mark.envoy

QUICK_BACKOFF = {"baseInterval": "10ms", "maxInterval": "20ms"}
FAST = 0.25   # seconds: an answer Envoy gives without waiting on anything (loopback, one worker)


def test_retries_recover_a_backend_that_fails_the_first_attempts(backend_pool: BackendPoolFactory,
                                                                 client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    retries = {"attempts": 3, "perTryTimeout": "1s", "retryOn": ["5xx"], "backoff": QUICK_BACKOFF}
    sidecar, client = client_sidecar(caller_spec(static_service("api", [backend.port]), {"retries": retries}))
    backend.fail_first(2)
    answer = client.request("/")
    assert answer.status == 200
    assert backend.hits == 3
    assert [r.headers.get("x-envoy-attempt-count") for r in backend.requests] == ["1", "2", "3"]
    assert sidecar.stat("cluster.api.upstream_rq_retry") == 2


def test_fail_fast_does_not_retry(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    sidecar, client = client_sidecar(caller_spec(static_service("api", [backend.port]),
                                                 {"failurePolicy": "fail_fast"}))
    backend.fail_first(2)
    assert client.request("/").status == 503
    assert backend.hits == 1
    assert sidecar.stat("cluster.api.upstream_rq_retry") in (None, 0)


def test_per_try_timeout_cuts_each_attempt(backend_pool: BackendPoolFactory, client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    retries = {"attempts": 2, "perTryTimeout": "100ms", "retryOn": ["5xx"], "backoff": QUICK_BACKOFF}
    _, client = client_sidecar(caller_spec(static_service("api", [backend.port]), {"timeout": "5s", "retries": retries}))
    backend.set_delay(1.0)
    answer = client.request("/")
    assert answer.status == 504
    assert backend.hits == 3
    # 3 tries x 100 ms plus two back-offs of at most 20 ms; far below one backend delay (1 s)
    assert 0.3 <= answer.elapsed < 0.8, answer.elapsed


def test_route_timeout_bounds_the_whole_request(backend_pool: BackendPoolFactory,
                                                client_sidecar: ClientSidecar) -> None:
    (backend,) = backend_pool(1)
    _, client = client_sidecar(caller_spec(static_service("api", [backend.port]),
                                           {"timeout": "300ms", "retries": {"attempts": 0}}))
    backend.set_delay(2.0)
    answer = client.request("/")
    assert answer.status == 504
    assert 0.25 <= answer.elapsed < 0.8, answer.elapsed   # Envoy's timers are coarse by a few ms


def test_outlier_detection_ejects_a_failing_backend(backend_pool: BackendPoolFactory,
                                                    client_sidecar: ClientSidecar) -> None:
    pool = backend_pool(names=["good", "bad"])
    outlier = {"consecutive5xx": 3, "interval": "1s", "baseEjectionTime": "30s", "maxEjectionPercent": 50}
    api = static_service("api", pool.ports, loadBalancer="round_robin", outlierDetection=outlier)
    sidecar, client = client_sidecar(caller_spec(api, {"retries": {"attempts": 0}}))
    pool["bad"].set_status(503)
    statuses = [client.request("/").status for _ in range(10)]
    assert statuses.count(503) == 3            # the third consecutive 5xx ejects it at once
    sidecar.wait_for_stat("cluster.api.outlier_detection.ejections_enforced_total", lambda v: v >= 1)
    bad = next(h for h in sidecar.cluster_hosts("api") if h.port == pool["bad"].port)
    assert bad.health.get("failed_outlier_check") is True
    pool.backends[0].reset_counts()
    pool.backends[1].reset_counts()
    assert spread(client, 50) == {"good": 50}
    assert pool["bad"].hits == 0


def test_active_health_check_takes_a_failing_backend_out_of_rotation(backend_pool: BackendPoolFactory,
                                                                     client_sidecar: ClientSidecar) -> None:
    """Envoy merges health changes for up to 1 s (update_merge_window) before the load balancer sees
    them, so the test waits on traffic itself: no request for the sick backend, then it is back."""
    pool = backend_pool(names=["steady", "sick"])
    check = {"path": "/healthz", "interval": "100ms", "timeout": "80ms", "healthyThreshold": 1, "unhealthyThreshold": 1}
    sidecar, client = client_sidecar(caller_spec(static_service("api", pool.ports, healthCheck=check)))
    sidecar.wait_for_cluster_healthy("api", hosts=2)
    assert set(spread(client, 20)) == {"steady", "sick"}
    pool["sick"].set_healthy(False)
    poll_until(lambda: [h.port for h in sidecar.cluster_hosts("api") if h.healthy] == [pool["steady"].port], timeout=5)
    poll_until(lambda: spread(client, 4) == {"steady": 4}, timeout=5, interval=0.1)
    pool["sick"].reset_counts()
    assert spread(client, 40) == {"steady": 40}
    assert pool["sick"].hits == 0
    pool["sick"].set_healthy(True)              # and it comes back
    poll_until(lambda: "sick" in spread(client, 4), timeout=5, interval=0.1)
    assert all(h.healthy for h in sidecar.cluster_hosts("api"))


def test_fail_fast_answers_at_once_when_the_upstream_is_down(client_sidecar: ClientSidecar) -> None:
    nobody = free_port()
    sidecar, client = client_sidecar(caller_spec(static_service("api", [nobody]), {"failurePolicy": "fail_fast"}))
    answers = [client.request("/") for _ in range(5)]
    assert [a.status for a in answers] == [503] * 5
    assert max(a.elapsed for a in answers) < FAST, [a.elapsed for a in answers]
    assert sidecar.stat("cluster.api.upstream_rq_retry") in (None, 0)


def test_fail_fast_answers_at_once_when_the_circuit_breaker_is_full(backend_pool: BackendPoolFactory,
                                                                     client_sidecar: ClientSidecar) -> None:
    """One connection, busy; fail_fast allows one request to wait for it; the next is refused at once."""
    (backend,) = backend_pool(1)
    api = static_service("api", [backend.port], circuitBreaker={"maxConnections": 1})
    sidecar, client = client_sidecar(caller_spec(api, {"failurePolicy": "fail_fast", "timeout": "5s"}))
    backend.set_delay(0.8)
    held: list[Answer] = []
    threads = [threading.Thread(target=lambda: held.append(Client(client.port).request("/"))) for _ in range(2)]
    threads[0].start()
    poll_until(lambda: backend.hits == 1, timeout=5)
    threads[1].start()
    sidecar.wait_for_stat("cluster.api.upstream_rq_pending_active", lambda v: v == 1)
    answer = client.request("/")
    assert answer.status == 503 and answer.headers.get("x-envoy-overloaded") == "true"
    assert answer.elapsed < FAST, answer.elapsed
    assert sidecar.stat("cluster.api.upstream_rq_pending_overflow") == 1
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(a.status for a in held) == [200, 200]    # the held and the queued request both finish
