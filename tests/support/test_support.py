"""The test support itself, exercised against real Envoy, etcd, Git and loopback backends."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from etcd3gw.types import TxnResponse
from etcd3gw.utils import _encode

from tests.support.backends import Backend, BackendPool
from tests.support.envoy import (
    EnvoyProcess,
    assert_invalid,
    assert_valid,
    static_proxy_bootstrap,
    validate_config,
    write_bootstrap,
)
from tests.support.etcd import EtcdServer
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.gitrepo import GitRepo
from tests.support.httpclient import http_get, http_request
from tests.support import ports as ports_module
from tests.support.ports import LOOPBACK, WaitTimeout, free_port, free_ports, poll_until, wait_for_port
from tests.support.process import ProcessExited

# -- ports and polling ---------------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in [*ports, free_port()]:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, port))
            assert sock.getsockname() == (LOOPBACK, port)


def test_free_ports_are_not_handed_out_twice_or_from_avoid() -> None:
    first = free_ports(50)
    avoid = set(free_ports(50))
    # Nothing binds these ports in between, so the OS may well offer them again.
    later = free_ports(200, avoid=avoid)
    assert not set(later) & set(first) and not set(later) & avoid


def test_free_ports_are_below_the_ephemeral_range_in_this_workers_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
        ephemeral_low = int(file.read().split()[0])
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        slices.append(free_ports(20))
    lowest = ports_module._LOWEST
    middle = lowest + (ephemeral_low - lowest) // 2
    assert all(port < middle for port in slices[0]) and all(middle <= port < ephemeral_low for port in slices[1])


def test_poll_until_returns_the_first_truthy_value() -> None:
    calls: list[int] = []

    def third_time() -> str | None:
        calls.append(1)
        return "done" if len(calls) == 3 else None

    assert poll_until(third_time, timeout=2, interval=0.001) == "done"
    assert len(calls) == 3


def test_poll_until_fails_at_the_deadline_with_message_and_last_error() -> None:
    def broken() -> bool:
        raise ConnectionRefusedError("nobody home")

    started = time.monotonic()
    with pytest.raises(WaitTimeout) as failure:
        poll_until(broken, timeout=0.1, message=lambda: "backend never came", ignore=(ConnectionError,))
    assert time.monotonic() - started < 1.0
    assert "backend never came" in str(failure.value)
    assert "nobody home" in str(failure.value)


def test_wait_for_port_sees_a_listener_and_times_out_without_one() -> None:
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen()
        wait_for_port(LOOPBACK, server.getsockname()[1], timeout=1)
    with pytest.raises(WaitTimeout):
        wait_for_port(LOOPBACK, free_port(), timeout=0.1)


# -- backends alone ------------------------------------------------------------------------------


def test_backend_names_itself_and_counts_per_path() -> None:
    with Backend("alpha") as backend:
        first = http_get(backend.url + "/a?x=1")
        http_get(backend.url + "/a")
        http_request(backend.url + "/b", "POST", body=b"payload")
        assert (first.status, first.text, first.header("x-backend")) == (200, "backend=alpha", "alpha")
        assert first.header("content-length") == str(len("backend=alpha"))
        assert backend.hits == 3
        assert (backend.path_hits("/a"), backend.path_hits("/b"), backend.path_hits("/c")) == (2, 1, 0)
        assert [(r.method, r.path, r.body) for r in backend.requests][-1] == ("POST", "/b", b"payload")


def test_backend_fail_first_then_recovers() -> None:
    with Backend("flaky") as backend:
        backend.fail_first(2, status=502)
        statuses = [http_get(backend.url + "/").status for _ in range(4)]
        assert statuses == [502, 502, 200, 200]
        assert backend.hits == 4


def test_backend_status_delay_and_health_are_independent() -> None:
    with Backend("slow") as backend:
        backend.set_status(500)
        backend.set_delay(0.2)
        backend.set_healthy(False)
        started = time.monotonic()
        assert http_get(backend.url + "/work").status == 500
        assert time.monotonic() - started >= 0.2
        started = time.monotonic()
        assert http_get(backend.url + "/healthz").status == 503
        assert time.monotonic() - started < 0.2
        backend.set_healthy(True)
        assert http_get(backend.url + "/healthz").status == 200
        assert (backend.hits, backend.health_checks, backend.path_hits("/healthz")) == (1, 2, 2)


def test_backend_keeps_connections_alive_and_counts_threads_safely() -> None:
    with Backend("shared") as backend:
        connection = http.client.HTTPConnection(LOOPBACK, backend.port, timeout=5)
        for _ in range(5):
            connection.request("GET", "/keep")
            assert connection.getresponse().read() == b"backend=shared"
        connection.close()
        assert backend.connections == 1

        threads = [threading.Thread(target=lambda: [http_get(backend.url + "/t") for _ in range(10)]) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert backend.path_hits("/t") == 80
        assert backend.hits == 85


def test_backend_stop_cuts_keep_alive_and_restarts_on_the_same_port() -> None:
    backend = Backend("phoenix").start()
    port = backend.port
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"backend=phoenix"
    backend.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.request("GET", "/")
        connection.getresponse().read()
    with pytest.raises(ConnectionRefusedError):
        http_get(backend.url + "/")
    backend.start()
    try:
        assert backend.port == port
        assert http_get(backend.url + "/").text == "backend=phoenix"
    finally:
        backend.stop()


def test_backend_pool_starts_named_backends(backend_pool: BackendPoolFactory) -> None:
    pool = backend_pool(names=["v1", "v2"])
    assert [http_get(b.url).header("x-backend") for b in pool] == ["v1", "v2"]
    assert pool.hits() == {"v1": 1, "v2": 1}
    assert len(set(pool.ports)) == 2
    assert pool["v2"] is pool[1]


# -- Envoy ---------------------------------------------------------------------------------------


def _bootstrap(tmp_path: Path, pool: BackendPool, **options: Any) -> Path:
    return write_bootstrap(static_proxy_bootstrap(pool.ports, **options), tmp_path / f"bootstrap-{time.monotonic_ns()}.json")


@pytest.mark.envoy
def test_envoy_validates_a_good_config_and_rejects_a_bad_one(tmp_path: Path) -> None:
    good = write_bootstrap(static_proxy_bootstrap([free_port()]), tmp_path / "good.json")
    assert validate_config(good).returncode == 0
    assert_valid(good)

    config = static_proxy_bootstrap([free_port()])
    config["static_resources"]["clusters"][0]["lb_policy"] = "FASTEST"
    bad = write_bootstrap(config, tmp_path / "bad.json")
    assert "FASTEST" in assert_invalid(bad)

    yaml_bad = tmp_path / "bad.yaml"
    yaml_bad.write_text("static_resources:\n  clusters:\n  - name: x\n    no_such_field: 1\n")
    assert "no_such_field" in assert_invalid(yaml_bad)
    with pytest.raises(AssertionError, match="Envoy rejects"):
        assert_valid(yaml_bad)


@pytest.mark.envoy
def test_envoy_proxies_to_a_backend_and_reports_it(
    tmp_path: Path, backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner
) -> None:
    pool = backend_pool(1)
    envoy = envoy_runner(_bootstrap(tmp_path, pool))
    url = envoy.listener_url("ingress")

    answers = [http_get(url + "/orders", headers={"x-request-id": f"req-{i}"}) for i in range(3)]

    assert [(a.status, a.text, a.header("x-backend")) for a in answers] == [(200, "backend=b0", "b0")] * 3
    assert pool[0].hits == 3
    assert pool[0].path_hits("/orders") == 3
    assert pool[0].connections == 1  # Envoy reused one upstream connection
    assert envoy.wait_for_stat("cluster.backend.upstream_rq_200", lambda v: v == 3) == 3
    assert envoy.stats()["http.ingress.downstream_rq_2xx"] == 3
    log = envoy.wait_for_stdout("req-2")  # the default access log format carries x-request-id
    assert log.count('"GET /orders HTTP/1.1" 200') == 3
    [host] = envoy.wait_for_cluster_healthy("backend")
    assert (host.address, host.port, host.counters["rq_success"]) == (LOOPBACK, pool[0].port, 3)


@pytest.mark.envoy
def test_envoy_retries_through_fail_first(
    tmp_path: Path, backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner
) -> None:
    pool = backend_pool(1)
    retry = {"retry_on": "5xx", "num_retries": 2, "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.02s"}}
    envoy = envoy_runner(_bootstrap(tmp_path, pool, retry_policy=retry))
    pool[0].fail_first(2)

    answer = http_get(envoy.listener_url("ingress") + "/pay")

    assert answer.status == 200
    assert pool[0].hits == 3
    assert [r.headers.get("x-envoy-attempt-count") for r in pool[0].requests] == ["1", "2", "3"]
    assert envoy.wait_for_stat("cluster.backend.upstream_rq_retry", lambda v: v == 2) == 2

    pool[0].fail_first(3)
    assert http_get(envoy.listener_url("ingress") + "/pay").status == 503
    assert pool[0].hits == 6


@pytest.mark.envoy
def test_envoy_route_timeout_and_dead_backend(
    tmp_path: Path, backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner
) -> None:
    pool = backend_pool(1)
    envoy = envoy_runner(_bootstrap(tmp_path, pool, route_timeout="0.1s"))
    url = envoy.listener_url("ingress")
    pool[0].set_delay(0.5)
    assert http_get(url + "/slow").status == 504
    pool[0].set_delay(0)
    assert http_get(url + "/fast").status == 200

    pool[0].stop()
    assert http_get(url + "/gone").status == 503
    pool[0].start()
    assert http_get(url + "/back").text == "backend=b0"


@pytest.mark.envoy
def test_envoy_active_health_checks_follow_the_backend(
    tmp_path: Path, backend_pool: BackendPoolFactory, envoy_runner: EnvoyRunner
) -> None:
    pool = backend_pool(2)
    envoy = envoy_runner(_bootstrap(tmp_path, pool, health_check_path="/healthz"))
    assert len(envoy.wait_for_cluster_healthy("backend")) == 2

    pool[1].set_healthy(False)
    [healthy] = envoy.wait_for_cluster_healthy("backend", hosts=1)

    assert healthy.port == pool[0].port
    sick = [h for h in envoy.cluster_hosts("backend") if h.port == pool[1].port]
    assert sick[0].health.get("failed_active_health_check") is True
    pool[0].reset_counts()
    for _ in range(4):
        assert http_get(envoy.listener_url("ingress")).header("x-backend") == "b0"
    assert pool[0].hits == 4
    assert pool[1].health_checks > 0


@pytest.mark.envoy
def test_several_envoys_run_at_once_and_stop_cleanly(tmp_path: Path, backend_pool: BackendPoolFactory) -> None:
    pool = backend_pool(1)
    envoys = [EnvoyProcess(_bootstrap(tmp_path, pool), tmp_path, name=f"proxy{i}") for i in range(3)]
    try:
        for envoy in envoys:
            envoy.start()
        admin_urls = {envoy.admin_url for envoy in envoys}
        answers = [http_get(envoy.listener_url("ingress")).status for envoy in envoys]
        pids = [envoy.process.pid for envoy in envoys]
    finally:
        codes = [envoy.stop() for envoy in envoys]
    assert len(admin_urls) == 3
    assert answers == [200, 200, 200]
    assert pool[0].hits == 3
    assert codes == [0, 0, 0]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.envoy
def test_envoy_restarts_in_place_and_cleans_up_its_workdir(tmp_path: Path, backend_pool: BackendPoolFactory) -> None:
    pool = backend_pool(1)
    with EnvoyProcess(_bootstrap(tmp_path, pool)) as envoy:
        assert http_get(envoy.listener_url("ingress") + "/first").status == 200
        assert envoy.stop() == 0
        assert not envoy.running
        envoy.start()
        assert http_get(envoy.listener_url("ingress") + "/second").status == 200
        log = envoy.wait_for_stdout("/second")
        workdir = envoy.workdir
    assert "/first" in log  # stdout is appended across restarts
    assert pool[0].hits == 2
    assert not workdir.exists()


@pytest.mark.envoy
def test_envoy_that_dies_at_startup_fails_fast_with_its_log(tmp_path: Path) -> None:
    port = free_port()
    config = static_proxy_bootstrap([free_port()], listener_port=port)
    bootstrap = write_bootstrap(config, tmp_path / "bootstrap.json")
    with socket.socket() as squatter:  # the listener port is taken, so Envoy exits at startup
        squatter.bind((LOOPBACK, port))
        squatter.listen()
        started = time.monotonic()
        with pytest.raises(ProcessExited) as failure:
            EnvoyProcess(bootstrap, tmp_path).start()
    assert time.monotonic() - started < 5
    assert "exited with code 1" in str(failure.value)
    assert "Address already in use" in str(failure.value)


# -- etcd ----------------------------------------------------------------------------------------


@pytest.mark.etcd
def test_etcd_round_trips_and_keeps_data_across_restart(etcd_server: EtcdServer) -> None:
    client = etcd_server.client()
    client.put("/meshc/shop/services/catalog", json.dumps({"port": 9090}))
    client.put("/meshc/shop/services/frontend", "{}")
    url = etcd_server.url

    assert client.get("/meshc/shop/services/catalog") == [b'{"port": 9090}']
    keys = [meta["key"] for _, meta in client.get_prefix("/meshc/shop/")]
    assert keys == [b"/meshc/shop/services/catalog", b"/meshc/shop/services/frontend"]

    etcd_server.stop()
    assert not etcd_server.healthy()
    etcd_server.start()

    assert etcd_server.url == url
    assert client.get("/meshc/shop/services/frontend") == [b"{}"]
    assert "/meshc/shop/services/catalog" in etcd_server.etcdctl("get", "--prefix", "/meshc/").stdout


@pytest.mark.etcd
def test_etcd_compare_and_swap_on_mod_revision(etcd_server: EtcdServer) -> None:
    client = etcd_server.client()
    client.put("/meshc/shop/revision", "aaa")
    [(_, meta)] = client.get("/meshc/shop/revision", metadata=True)
    seen = int(meta["mod_revision"])  # int64 fields arrive as JSON strings

    def swap(new: str) -> TxnResponse:
        key = _encode("/meshc/shop/revision")
        return client.transaction({
            "compare": [{"key": key, "result": "EQUAL", "target": "MOD", "mod_revision": seen}],
            "success": [{"request_put": {"key": key, "value": _encode(new)}}],
            "failure": [{"request_range": {"key": key}}],
        })  # fmt: skip

    first = swap("bbb")
    second = swap("ccc")  # the key has moved on since `seen`: a concurrent writer won

    assert first.get("succeeded") is True
    assert "succeeded" not in second  # proto3 JSON leaves out false
    current = second["responses"][0]["response_range"]["kvs"][0]
    assert int(current["mod_revision"]) == int(first["header"]["revision"])
    assert client.get("/meshc/shop/revision") == [b"bbb"]


@pytest.mark.etcd
def test_etcd_lock_is_exclusive(etcd_server: EtcdServer) -> None:
    client = etcd_server.client()
    holder = client.lock("meshc-watch", ttl=5)
    rival = client.lock("meshc-watch", ttl=5)
    assert holder.acquire() is True
    assert rival.acquire() is False
    assert holder.release() is True
    assert rival.acquire() is True


# -- Git -----------------------------------------------------------------------------------------


def test_git_repo_commits_reproducibly(tmp_path: Path, git_repo: GitRepo) -> None:
    first = git_repo.commit_file("mesh.yaml", "kind: Mesh\n", "add mesh")
    second = git_repo.commit_file("mesh.yaml", "kind: Mesh\nspec: {}\n", "edit mesh")
    twin = GitRepo.init(tmp_path / "twin")
    twin_first = twin.commit_file("mesh.yaml", "kind: Mesh\n", "add mesh")

    assert twin_first == first  # fixed author and clock: same content, same sha
    assert git_repo.shas() == [second, first]
    assert git_repo.show(first, "mesh.yaml") == "kind: Mesh"  # git show drops the final newline
    assert git_repo.active_branch == "main"
    commit = git_repo.repo.commit(second)
    assert (commit.author.email, commit.committed_date - git_repo.repo.commit(first).committed_date) == (
        "tests@meshc.invalid",
        1,
    )


def test_git_repo_dirty_tree_branches_and_bare_clone(tmp_path: Path, git_repo: GitRepo) -> None:
    base = git_repo.commit_file("mesh.yaml", "a: 1\n", "base")
    git_repo.dirty("mesh.yaml", "a: 2\n")
    assert git_repo.repo.is_dirty()
    assert git_repo.show("HEAD", "mesh.yaml") == "a: 1"

    git_repo.branch("feature", checkout=True)
    feature = git_repo.commit_files({"mesh.yaml": "a: 3\n", "notes.txt": "x\n"}, "feature")
    assert git_repo.active_branch == "feature"
    assert not git_repo.repo.is_dirty()
    assert git_repo.commit_files({"notes.txt": None}, "drop notes") != feature
    empty = git_repo.commit_empty("no-op")
    assert git_repo.repo.commit(empty).stats.total["files"] == 0

    remote = git_repo.clone_bare(tmp_path / "remote.git")
    assert remote.repo.bare
    assert remote.repo.commit("main").hexsha == base
    git_repo.checkout("main")
    after = git_repo.commit_file("mesh.yaml", "a: 4\n", "main moves")
    git_repo.push(remote.path)
    assert remote.repo.commit("main").hexsha == after
    with pytest.raises(ValueError, match="bare"):
        remote.commit_file("x", "y", "z")
