"""Fixtures for traffic through meshc-built sidecars: `client_sidecar(spec)` starts the caller's Envoy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from meshc.emit import naming
from tests.support.envoy import EnvoyProcess
from tests.support.fixtures import EnvoyRunner
from tests.traffic.sidecars import Client, envoy_files, install, local_port


class ClientSidecar(Protocol):
    def __call__(self, spec: Mapping[str, Any], hosts: Mapping[str, str] | None = None,
                 index: int = 0) -> tuple[EnvoyProcess, Client]: ...


@pytest.fixture
def client_sidecar(tmp_path: Path, envoy_runner: EnvoyRunner) -> Iterator[ClientSidecar]:
    """Build the spec, start `client`'s sidecar, and return it with a keep-alive client to one upstream."""
    clients: list[Client] = []

    def start(spec: Mapping[str, Any], hosts: Mapping[str, str] | None = None,
              index: int = 0) -> tuple[EnvoyProcess, Client]:
        files = envoy_files(spec, tmp_path / "config", hosts)
        sidecar = envoy_runner(install(files, "client", tmp_path / "config"), name="client")
        upstream = next(s for s in spec["spec"]["services"] if s["name"] == "client")["upstreams"][index]
        sidecar.wait_for_listener(naming.outbound_listener_name(upstream["service"], upstream["localPort"]))
        client = Client(local_port(spec, index=index))
        clients.append(client)
        return sidecar, client

    try:
        yield start
    finally:
        for client in clients:
            client.close()
