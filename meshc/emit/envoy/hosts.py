"""Where a deployed service's sidecars are reached when not through Kubernetes DNS (hosts, VMs, tests).

`BuildOptions.envoy_hosts` maps `SERVICE` or `SERVICE/VERSION` to `HOST[:PORT]`; the port defaults to
the mesh's sidecar inbound port. Callers' clusters for that service (or version) then point at that
address instead of the version's headless Service: STATIC for an IP address, STRICT_DNS for a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshc.resolve import ir

MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class HostAddress:
    address: str
    port: int | None          # None: the callee's sidecar inbound port


def parse_host(text: str) -> HostAddress:
    """`10.0.0.7`, `10.0.0.7:15006`, `vm-3.corp:15006`, `[fd00::7]:15006`; ValueError otherwise."""
    text = text.strip()
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError(f"'{text}' is not HOST[:PORT]")
    elif text.count(":") == 1:
        address, port_text = text.split(":")
    else:
        address, port_text = text, None
    if not address or any(c.isspace() or c in "/@" for c in address):
        raise ValueError(f"'{text}' is not HOST[:PORT]")
    return HostAddress(address, _port(port_text, text))


def _port(port_text: str | None, text: str) -> int | None:
    if port_text is None:
        return None
    if not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
        raise ValueError(f"'{text}': the port must be a number from 1 to {MAX_PORT}")
    return int(port_text)


def host_key(service: str, version: ir.Version | None = None) -> str:
    return service if version is None else f"{service}/{version.name}"


def parse_hosts(hosts: Mapping[str, str]) -> dict[str, HostAddress]:
    return {key: parse_host(value) for key, value in hosts.items()}


def unknown_host_keys(mesh: ir.Mesh, hosts: Mapping[str, str]) -> list[str]:
    """Keys naming no deployed service or version of the mesh (a typo would otherwise go unnoticed)."""
    known = {host_key(s.name) for s in mesh.deployed_services}
    known |= {host_key(s.name, v) for s in mesh.deployed_services for v in s.versions}
    return sorted(key for key in hosts if key not in known)
