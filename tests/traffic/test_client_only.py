"""A client-only service (no `port`) with real Envoy: its sidecar has no inbound listener but carries
every outbound call, and the address variables its app is given point at those working listeners.

The variables are read from the Deployment meshc generates for the app (its `env`), built together
with the sidecar files the test's Envoys run, so the two cannot disagree unnoticed.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from meshc.emit import naming
from meshc.pipeline import BuildOptions, compile
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import LOOPBACK, free_ports
from tests.traffic.sidecars import CONFIG_DIR_TEMPLATE, Client, install, source_of, spread

pytestmark = pytest.mark.envoy


def mesh(web_port: int, store_port: int, ports: list[int]) -> dict[str, Any]:
    """loadgen (no port) calls web (in the mesh, with its own sidecar) and store (static endpoints)."""
    admin, inbound, stats, web_local, store_local = ports
    return {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "clients"},
        "spec": {
            "proxy": {"adminPort": admin, "inboundPort": inbound, "statsPort": stats, "accessLog": "off"},
            "analysis": {"entryPoints": ["web"]},
            "security": {"mtls": "off"},      # plaintext between the sidecars: this test is about routing
            "services": [
                {"name": "loadgen", "image": "example.com/loadgen:1",
                 "upstreams": [
                     {"service": "web", "localPort": web_local,
                      "env": {"FRONTEND_ADDR": "{address}", "WEB_HOSTNAME": "{host}", "WEB_SERVICE_PORT": "{port}"}},
                     {"service": "store", "localPort": store_local},     # the default: STORE_URL={url}
                 ]},
                {"name": "web", "image": "example.com/web:1", "port": web_port},
                {"name": "store", "port": store_port, "endpoints": [{"address": LOOPBACK, "port": store_port}]},
            ],
        },
    }


def app_env(files: dict[str, bytes], deployment: str) -> dict[str, str]:
    for obj in yaml.safe_load_all(files[naming.kubernetes_path(deployment)]):
        if obj["kind"] == "Deployment":
            (app,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == naming.APP_CONTAINER]
            return {e["name"]: e["value"] for e in app.get("env", [])}
    raise AssertionError(f"no Deployment for {deployment}")


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_client_only_sidecar_routes_its_calls_from_the_app_variables(
        backend_pool: BackendPoolFactory, tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    web_app, store_app = backend_pool(names=["web-app", "store-app"])
    root = tmp_path / "config"
    # two sidecars on one machine: each gets its own proxy ports
    client_spec = mesh(web_app.port, store_app.port, free_ports(5))
    server_spec = mesh(web_app.port, store_app.port, free_ports(5))
    web_inbound = server_spec["spec"]["proxy"]["inboundPort"]
    options = BuildOptions(config_dir=str(root / CONFIG_DIR_TEMPLATE), envoy_hosts={"web": f"{LOOPBACK}:{web_inbound}"})
    client_build = compile(source_of(client_spec), options).bundle
    server_build = compile(source_of(server_spec), BuildOptions(config_dir=str(root / CONFIG_DIR_TEMPLATE))).bundle
    assert client_build is not None and server_build is not None
    client_files, server_files = dict(client_build.files), dict(server_build.files)

    # no Service and no inbound listener for the client-only service
    assert naming.kubernetes_path("loadgen") in client_files
    kinds = {obj["kind"] for obj in client_build.documents(naming.kubernetes_path("loadgen"))}
    assert "Service" not in kinds and "Deployment" in kinds

    envoy_runner(install(server_files, "web", root), name="web")
    loadgen = envoy_runner(install(client_files, "loadgen", root), name="loadgen")
    listeners = {entry["name"] for entry in loadgen.config_dump("dynamic_listeners")["configs"]}
    assert naming.INBOUND_LISTENER not in listeners and len(listeners) == 2
    assert refuses_connections(client_spec["spec"]["proxy"]["inboundPort"])
    loadgen.wait_for_cluster_healthy("web")

    env = app_env(client_files, "loadgen")
    assert set(env) == {"FRONTEND_ADDR", "WEB_HOSTNAME", "WEB_SERVICE_PORT", "STORE_URL"}
    host, port = env["FRONTEND_ADDR"].rsplit(":", 1)
    assert (env["WEB_HOSTNAME"], env["WEB_SERVICE_PORT"]) == (host, port)
    assert host == LOOPBACK
    with Client(int(port)) as client:
        assert spread(client, 20) == {"web-app": 20}           # loadgen -> its sidecar -> web's sidecar -> web
    store = urlsplit(env["STORE_URL"])
    assert store.scheme == "http" and store.hostname == LOOPBACK
    with Client(int(store.port or 0)) as client:
        assert spread(client, 10) == {"store-app": 10}
    assert web_app.hits == 20 and store_app.hits == 10
    assert loadgen.stat("cluster.web.upstream_rq_total") == 20
    assert loadgen.stat("cluster.store.upstream_rq_total") == 10

