"""Sidecars for tests: build meshc's Envoy files for a spec and install them where a real Envoy runs.

Specs are plain dicts turned into mesh.yaml text, so each test states the policy it exercises.
Proxy ports and localPorts are replaced by free ones, since many Envoys share one machine.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Self

import yaml

from meshc.bundle import render_files
from meshc.diagnostics import has_errors
from meshc.emit import envoy, naming
from meshc.load import SpecSource
from meshc.pipeline import check
from meshc.resolve import ir
from tests.support.envoy import atomic_write
from tests.support.ports import LOOPBACK, free_ports

Spec = dict[str, Any]
CONFIG_DIR_TEMPLATE = "{service}"   # one config directory per sidecar under the test's root


def source_of(spec: Mapping[str, Any], name: str = "mesh.yaml") -> SpecSource:
    return SpecSource(name=name, data=yaml.safe_dump(dict(spec), sort_keys=False).encode())


def with_free_ports(spec: Mapping[str, Any]) -> Spec:
    """A copy whose proxy ports and upstream localPorts are free on this machine right now."""
    spec = copy.deepcopy(dict(spec))
    services = spec["spec"]["services"]
    local_ports = sum(len(s.get("upstreams", [])) for s in services)
    ports = iter(free_ports(3 + local_ports))
    proxy = spec["spec"].setdefault("proxy", {})
    proxy["adminPort"], proxy["inboundPort"], proxy["statsPort"] = next(ports), next(ports), next(ports)
    for service in services:
        for upstream in service.get("upstreams", []):
            upstream["localPort"] = next(ports)
    return spec


def ports_named(spec: Mapping[str, Any]) -> set[int]:
    """The proxy ports and upstream localPorts a spec already names."""
    proxy = spec["spec"].get("proxy", {})
    named = {proxy[key] for key in ("adminPort", "inboundPort", "statsPort") if key in proxy}
    return named | {upstream["localPort"] for service in spec["spec"]["services"]
                    for upstream in service.get("upstreams", []) if "localPort" in upstream}


def mesh_of(source: SpecSource) -> ir.Mesh:
    checked = check(source)
    errors = [str(d) for d in checked.diagnostics if d.is_error]
    assert checked.mesh is not None and not has_errors(checked.diagnostics), "\n".join(errors)
    return checked.mesh


def envoy_files(spec: Mapping[str, Any] | SpecSource, root: Path,
                hosts: Mapping[str, str] | None = None, tls_root: Path | None = None) -> dict[str, bytes]:
    """meshc's rendered Envoy files, with each sidecar's config directory at root/<service> (and
    its certificates at tls_root/<service>, the layout `meshc ca issue` writes)."""
    source = spec if isinstance(spec, SpecSource) else source_of(spec)
    tls_dir = str(tls_root / CONFIG_DIR_TEMPLATE) if tls_root is not None else naming.DEFAULT_TLS_DIR
    return render_files(envoy.emit(mesh_of(source), str(root / CONFIG_DIR_TEMPLATE), hosts, tls_dir))


def issue_certificates(spec: Mapping[str, Any], root: Path) -> Path:
    """A CA at root/ca and every deployed service's certificate under root/tls/<service>, made by
    `meshc ca`; returns root/tls (pass it to envoy_files as tls_root)."""
    from meshc.cli import main

    spec_file = root / "certificates-for.yaml"
    spec_file.write_text(json.dumps(dict(spec)))
    assert main(["ca", "init", str(root / "ca"), "--force"]) == 0
    assert main(["ca", "issue", str(spec_file), "--ca", str(root / "ca"), "-o", str(root / "tls")]) == 0
    return root / "tls"


def load(files: Mapping[str, bytes], service: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(files[naming.envoy_path(service, name)])
    return loaded


def install(files: Mapping[str, bytes], service: str, root: Path) -> Path:
    """Write one sidecar's files (three, and the SDS files with mTLS) into root/<service>; returns the
    bootstrap's path."""
    directory = root / service
    directory.mkdir(parents=True, exist_ok=True)
    for name in (*naming.ENVOY_FILES, *naming.SDS_FILES.values()):
        if naming.envoy_path(service, name) in files:
            atomic_write(directory / name, files[naming.envoy_path(service, name)].decode())
    return directory / naming.ENVOY_FILES[0]


def swap(files: Mapping[str, bytes], service: str, root: Path, name: str) -> None:
    """Move a new cds.yaml or lds.yaml into place, as a ConfigMap update or a sync does."""
    atomic_write(root / service / name, files[naming.envoy_path(service, name)].decode())


def static_bootstrap(files: Mapping[str, bytes], service: str) -> dict[str, Any]:
    """The sidecar's bootstrap with its cds/lds resources made static: what `--mode validate` can check
    (validate mode does not read file-based dynamic resources)."""
    bootstrap = load(files, service, "bootstrap.yaml")
    static = bootstrap.pop("static_resources")
    bootstrap.pop("dynamic_resources")

    def plain(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "@type"} for r in resources]

    bootstrap["static_resources"] = {
        "listeners": static["listeners"] + plain(load(files, service, "lds.yaml")["resources"]),
        "clusters": static["clusters"] + plain(load(files, service, "cds.yaml")["resources"]),
    }
    return bootstrap


# --- specs --------------------------------------------------------------------------------

def caller_spec(callee: Mapping[str, Any], upstream: Mapping[str, Any] | None = None, *,
                access_log: str = "off", defaults: Mapping[str, Any] | None = None,
                extra_services: Sequence[Mapping[str, Any]] = (), mtls: str = "off") -> Spec:
    """A mesh of `client` (whose sidecar the test drives) calling one service, with free ports.

    mTLS is off unless asked for: these meshes point the caller straight at test backends, which
    speak plaintext (tests/traffic/test_zero_trust.py runs sidecar pairs with certificates)."""
    client = {"name": "client", "image": "example.com/client:1", "port": 8080,
              "upstreams": [{"service": callee["name"], "localPort": 1, **(upstream or {})}]}
    spec = {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "traffic"},
        "spec": {
            "proxy": {"accessLog": access_log},
            "security": {"mtls": mtls},
            "defaults": dict(defaults or {}),
            "services": [client, dict(callee), *map(dict, extra_services)],
        },
    }
    return with_free_ports(spec)


def static_service(name: str, ports: Sequence[int], weights: Sequence[int] | None = None,
                   **policies: Any) -> Spec:
    """A service outside the mesh: static endpoints on loopback (the test's backends)."""
    endpoints = [{"address": LOOPBACK, "port": port} for port in ports]
    for endpoint, weight in zip(endpoints, weights or ()):
        endpoint["weight"] = weight
    return {"name": name, "port": ports[0], "endpoints": endpoints, **policies}


def with_new_upstream(spec: Mapping[str, Any], name: str, ports: Sequence[int],
                      caller_index: int = 0) -> tuple[Spec, int]:
    """A copy of spec whose caller also calls a new static service `name` on a free localPort."""
    changed: Spec = copy.deepcopy(dict(spec))
    port = free_ports(1, avoid=ports_named(changed))[0]
    changed["spec"]["services"][caller_index]["upstreams"].append({"service": name, "localPort": port})
    changed["spec"]["services"].append(static_service(name, ports))
    return changed, port


def local_port(spec: Mapping[str, Any], caller: str = "client", index: int = 0) -> int:
    service = next(s for s in spec["spec"]["services"] if s["name"] == caller)
    port: int = service["upstreams"][index]["localPort"]
    return port


def proxy_port(spec: Mapping[str, Any], field: str) -> int:
    port: int = spec["spec"]["proxy"][field]
    return port


# --- traffic ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    @property
    def backend(self) -> str | None:
        return self.headers.get("x-backend")


class Client:
    """Keep-alive HTTP/1.1 to one listener, reconnecting when Envoy closes the connection."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._connection: HTTPConnection | None = None

    def request(self, path: str = "/", headers: Mapping[str, str] | None = None, method: str = "GET") -> Answer:
        for attempt in range(2):
            connection = self._connect()
            started = time.monotonic()
            try:
                connection.request(method, path, headers=dict(headers or {}))
                response = connection.getresponse()
                body = response.read()
            except (ConnectionError, OSError) as error:
                self.close()
                if attempt or not isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
                    raise
                continue
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                            time.monotonic() - started)
            if response.will_close:
                self.close()
            return answer
        raise AssertionError("unreachable")

    def _connect(self) -> HTTPConnection:
        if self._connection is None:
            self._connection = HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spread(client: Client, count: int, path: str = "/", headers: Mapping[str, str] | None = None) -> dict[str, int]:
    """Send `count` requests; how many each backend answered (every answer must be a 200)."""
    seen: dict[str, int] = {}
    for _ in range(count):
        answer = client.request(path, headers)
        assert answer.status == 200, (answer.status, answer.headers, answer.body)
        assert answer.backend is not None
        seen[answer.backend] = seen.get(answer.backend, 0) + 1
    return seen


def binomial_margin(trials: int, share: float, sigmas: float = 5.0) -> float:
    """How far a binomial count may honestly stray from trials*share: `sigmas` standard deviations."""
    return float(sigmas * (trials * share * (1 - share)) ** 0.5)

