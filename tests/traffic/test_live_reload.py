"""File-based xDS: a new cds.yaml / lds.yaml moved into the config directory takes effect in the
running sidecar, without a restart, as a ConfigMap update or `meshc apply --output` delivers it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshc.emit import naming
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import poll_until
from tests.traffic.sidecars import (
    Client,
    caller_spec,
    envoy_files,
    install,
    local_port,
    spread,
    static_service,
    swap,
    with_new_upstream,
)

pytestmark = pytest.mark.envoy

BOOTSTRAP = naming.envoy_path("client", "bootstrap.yaml")


def test_new_cluster_and_route_serve_traffic_without_restart(backend_pool: BackendPoolFactory, tmp_path: Path,
                                                             envoy_runner: EnvoyRunner) -> None:
    pool = backend_pool(names=["a", "b", "c"])
    root = tmp_path / "config"
    spec = caller_spec(static_service("alpha", [pool["a"].port]))
    files = envoy_files(spec, root)
    sidecar = envoy_runner(install(files, "client", root), name="client")
    alpha = local_port(spec)
    assert spread(Client(alpha), 5) == {"a": 5}
    pid = sidecar.process.pid

    # The next revision moves alpha to another backend and adds an upstream `beta` on a new localPort.
    changed, beta = with_new_upstream(spec, "beta", [pool["b"].port])
    changed["spec"]["services"][1]["endpoints"] = [{"address": "127.0.0.1", "port": pool["c"].port}]
    new = envoy_files(changed, root)
    assert new[BOOTSTRAP] == files[BOOTSTRAP]       # only cds/lds change, so no restart is needed

    swap(new, "client", root, "cds.yaml")           # clusters first: the new route refers to `beta`
    sidecar.wait_for_stat("cluster_manager.cds.update_success", lambda v: v >= 2)
    swap(new, "client", root, "lds.yaml")
    sidecar.wait_for_listener(naming.outbound_listener_name("beta", beta))
    poll_until(lambda: Client(alpha).request("/").backend == "c", timeout=5)

    assert spread(Client(beta), 5) == {"b": 5}
    assert spread(Client(alpha), 5) == {"c": 5}
    assert sidecar.running and sidecar.process.pid == pid
    assert sidecar.stat("cluster_manager.cds.update_rejected") == 0
    assert sidecar.stat("listener_manager.lds.update_rejected") == 0


def test_listeners_moved_in_before_their_clusters_work_once_the_clusters_arrive(
        backend_pool: BackendPoolFactory, tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    """Writers rename cds.yaml first, but a reversed order must not leave the proxy on a rejected file:
    the new listener loads at once, answers 503 while its cluster is missing, then serves."""
    (backend,) = backend_pool(names=["b"])
    root = tmp_path / "config"
    spec = caller_spec(static_service("alpha", [backend.port]))
    sidecar = envoy_runner(install(envoy_files(spec, root), "client", root), name="client")
    spec, beta = with_new_upstream(spec, "beta", [backend.port])
    new = envoy_files(spec, root)

    swap(new, "client", root, "lds.yaml")
    sidecar.wait_for_listener(naming.outbound_listener_name("beta", beta))
    assert Client(beta).request("/").status == 503          # no cluster `beta` yet
    swap(new, "client", root, "cds.yaml")
    sidecar.wait_for_stat("cluster.beta.membership_total", lambda v: v == 1)
    poll_until(lambda: Client(beta).request("/").status == 200, timeout=5)
    assert sidecar.stat("listener_manager.lds.update_rejected") == 0
    assert sidecar.stat("cluster_manager.cds.update_rejected") == 0
