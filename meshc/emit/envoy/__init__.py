"""Envoy emitter: per sidecar, bootstrap.yaml plus file-based xDS (cds.yaml, lds.yaml).

Reads only the IR. Every deployed service gets a sidecar; services reached through static
endpoints have none. cds/lds are DiscoveryResponse-shaped so Envoy's path_config_source reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshc import render
from meshc.emit import Documents, DocumentStream, naming
from meshc.emit.envoy.bootstrap import bootstrap, proxy_parts
from meshc.emit.envoy.hosts import parse_hosts
from meshc.emit.envoy.sidecar import MeshContext, sidecar_resources
from meshc.emit.envoy.values import CLUSTER_TYPE, LISTENER_TYPE, Json
from meshc.resolve import ir

__all__ = ["emit", "iter_documents"]


def emit(mesh: ir.Mesh, config_dir: str, hosts: Mapping[str, str] | None = None) -> Documents:
    """`envoy/<service>/{bootstrap,cds,lds}.yaml` for every deployed service."""
    return dict(iter_documents(mesh, config_dir, hosts))


def iter_documents(mesh: ir.Mesh, config_dir: str, hosts: Mapping[str, str] | None = None) -> DocumentStream:
    """The files of one sidecar after another.

    `hosts` (SERVICE or SERVICE/VERSION -> HOST[:PORT]) points callers at sidecars outside
    Kubernetes; see meshc.emit.envoy.hosts.
    """
    ctx = MeshContext(mesh, parse_hosts(hosts or {}))
    shared = proxy_parts(mesh.proxy)
    for service in mesh.deployed_services:
        clusters, listeners = sidecar_resources(ctx, service)
        yield naming.envoy_path(service.name, "bootstrap.yaml"), [bootstrap(mesh, service, config_dir, shared)]
        yield naming.envoy_path(service.name, "cds.yaml"), [discovery_response(CLUSTER_TYPE, clusters)]
        yield naming.envoy_path(service.name, "lds.yaml"), [discovery_response(LISTENER_TYPE, listeners)]


def discovery_response(type_url: str, resources: list[Json]) -> Json:
    """What a file-based xDS source holds; version_info changes exactly when the content does."""
    return {"version_info": render.content_hash(resources), "type_url": type_url, "resources": resources}
