"""The sidecar's ConfigMap, mounted the way the kubelet mounts it, reloads in a running Envoy.

The kubelet writes a ConfigMap volume as `..<timestamp>/` holding the files, a symlink `..data`
to it, and one symlink per key (`cds.yaml -> ..data/cds.yaml`). An update writes a new timestamped
directory and renames a new `..data_tmp` link over `..data`: one move in the mounted directory,
which is what Envoy's watched_directory reacts to. These tests do exactly that with the data of the
ConfigMap meshc generates, against a real Envoy, and check the Deployment stays unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from meshc.bundle import render_files
from meshc.emit import envoy, kubernetes, naming
from meshc.load import SpecSource
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import free_port, poll_until
from tests.traffic.sidecars import (
    CONFIG_DIR_TEMPLATE,
    Client,
    caller_spec,
    local_port,
    mesh_of,
    source_of,
    spread,
    static_service,
    with_new_upstream,
)

pytestmark = pytest.mark.envoy


class KubeletVolume:
    """A directory laid out and updated like the kubelet's atomic writer does for ConfigMaps."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.generation = 0

    def write(self, data: Mapping[str, str]) -> None:
        self.generation += 1
        payload = self.directory / f"..2026_01_01_00_00_00.{self.generation:09d}"
        payload.mkdir(parents=True)
        for key, text in data.items():
            (payload / key).write_text(text, encoding="utf-8")
        previous = (self.directory / "..data").resolve() if (self.directory / "..data").exists() else None
        link = self.directory / "..data_tmp"
        link.symlink_to(payload.name)
        os.replace(link, self.directory / "..data")
        for key in data:
            if not (self.directory / key).is_symlink():
                (self.directory / key).symlink_to(f"..data/{key}")
        if previous is not None:
            for child in previous.iterdir():
                child.unlink()
            previous.rmdir()


def objects(source: SpecSource, root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The Kubernetes objects for `source`, with sidecars configured for a directory under root."""
    mesh = mesh_of(source)
    files = render_files(envoy.emit(mesh, str(root / CONFIG_DIR_TEMPLATE), None))
    sidecars = {s.name: {name: files[naming.envoy_path(s.name, name)] for name in naming.ENVOY_FILES}
                for s in mesh.deployed_services}
    documents = kubernetes.emit(mesh, sidecars)
    return {(o["kind"], o["metadata"]["name"]): o for o in documents[naming.kubernetes_path("client")]}


def test_a_config_map_update_reroutes_a_running_sidecar_without_rolling_its_pods(
        backend_pool: BackendPoolFactory, tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    pool = backend_pool(names=["a", "b", "c"])
    root = tmp_path / "volumes"
    spec = caller_spec(static_service("alpha", [pool["a"].port]))
    before = objects(source_of(spec), root)
    volume = KubeletVolume(root / "client")
    volume.write(before[("ConfigMap", naming.config_map_name("client"))]["data"])
    sidecar = envoy_runner(root / "client" / naming.BOOTSTRAP_FILE, name="client")
    alpha = local_port(spec)
    assert spread(Client(alpha), 4) == {"a": 4}
    pid = sidecar.process.pid

    # Next commit: alpha moves to backend c, and a new upstream beta (new cluster AND new listener,
    # delivered in the same ConfigMap update, as they would be).
    changed, beta = with_new_upstream(spec, "beta", [pool["b"].port])
    changed["spec"]["services"][1]["endpoints"] = [{"address": "127.0.0.1", "port": pool["c"].port}]
    after = objects(source_of(changed), root)
    assert after[("ConfigMap", "client-envoy")] != before[("ConfigMap", "client-envoy")]
    # The bootstrap is the same, so the sidecar is not restarted; only the app's environment gains
    # BETA_URL (the app must learn the new upstream), which is the one change in the Deployment.
    assert _without_app_env(after[("Deployment", "client")]) == _without_app_env(before[("Deployment", "client")])

    volume.write(after[("ConfigMap", naming.config_map_name("client"))]["data"])
    sidecar.wait_for_listener(naming.outbound_listener_name("beta", beta))
    poll_until(lambda: Client(alpha).request("/").backend == "c", timeout=10)
    poll_until(lambda: Client(beta).request("/").backend == "b", timeout=10)
    assert spread(Client(alpha), 4) == {"c": 4}
    assert spread(Client(beta), 4) == {"b": 4}
    assert sidecar.running and sidecar.process.pid == pid
    assert sidecar.stat("cluster_manager.cds.update_rejected") == 0
    assert sidecar.stat("listener_manager.lds.update_rejected") == 0


def test_policy_changes_leave_the_deployment_byte_identical(tmp_path: Path) -> None:
    spec = caller_spec(static_service("alpha", [free_port()]))
    before = objects(source_of(spec), tmp_path)
    changed = copy.deepcopy(spec)
    changed["spec"]["services"][0]["upstreams"][0] |= {"timeout": "750ms", "retries": {"attempts": 3}}
    changed["spec"]["services"][1] |= {"loadBalancer": "least_request", "connectTimeout": "100ms"}
    after = objects(source_of(changed), tmp_path)
    assert after[("ConfigMap", "client-envoy")] != before[("ConfigMap", "client-envoy")]
    assert {k: v for k, v in after.items() if k[0] != "ConfigMap"} == {k: v for k, v in before.items() if k[0] != "ConfigMap"}


def _without_app_env(deployment: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(deployment)
    del copied["metadata"]["annotations"]
    for container in copied["spec"]["template"]["spec"]["containers"]:
        container.pop("env", None)
    return copied


def test_a_bootstrap_change_is_what_rolls_the_pods(tmp_path: Path) -> None:
    spec = caller_spec(static_service("alpha", [free_port()]))
    before = objects(source_of(spec), tmp_path)
    changed = copy.deepcopy(spec)
    changed["spec"]["proxy"]["statsPort"] = free_port()
    after = objects(source_of(changed), tmp_path)
    annotation = lambda objs: objs[("Deployment", "client")]["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert annotation(before)[naming.BOOTSTRAP_HASH_ANNOTATION] != annotation(after)[naming.BOOTSTRAP_HASH_ANNOTATION]
