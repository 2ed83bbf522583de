"""Envoy emitter: per sidecar, bootstrap.yaml plus file-based xDS (cds.yaml, lds.yaml).

Reads only the IR. Every deployed service gets a sidecar; services reached through static
endpoints have none. cds/lds are DiscoveryResponse-shaped so Envoy's path_config_source reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from meshc.emit import Documents, DocumentStream, naming
from meshc.emit.envoy.bootstrap import bootstrap, proxy_parts
from meshc.emit.envoy.hosts import parse_hosts
from meshc.emit.envoy.gateway import gateway_documents
from meshc.emit.envoy.sidecar import MeshContext, sds_resources, sidecar_resources
from meshc.emit.envoy.tls import SECRET_TYPE
from meshc.emit.envoy.values import CLUSTER_TYPE, LISTENER_TYPE, Json, discovery_response
from meshc.resolve import ir

__all__ = ["GatewayEmitter", "SidecarEmitter", "discovery_response", "emit", "gateway_emitter", "iter_documents",
           "sidecar_emitter"]


def emit(mesh: ir.Mesh, config_dir: str, hosts: Mapping[str, str] | None = None,
         tls_dir: str = naming.DEFAULT_TLS_DIR) -> Documents:
    """`envoy/<service>/{bootstrap,cds,lds}.yaml` for every deployed service (and the SDS files with mTLS)."""
    return dict(iter_documents(mesh, config_dir, hosts, tls_dir))


def iter_documents(mesh: ir.Mesh, config_dir: str, hosts: Mapping[str, str] | None = None,
                   tls_dir: str = naming.DEFAULT_TLS_DIR) -> DocumentStream:
    """The files of one sidecar after another.

    `hosts` (SERVICE or SERVICE/VERSION -> HOST[:PORT]) points callers at sidecars outside
    Kubernetes; see meshc.emit.envoy.hosts. `tls_dir` is where sidecars read their certificates
    (`{service}` becomes the sidecar's name).
    """
    sidecar = sidecar_emitter(mesh, config_dir, hosts, tls_dir)
    for service in mesh.deployed_services:
        for filename, docs in sidecar(service).items():
            yield naming.envoy_path(service.name, filename), docs
    gateway = gateway_emitter(mesh, config_dir, hosts, mesh_tls_dir=tls_dir)
    for each in mesh.gateways:
        for filename, docs in gateway(each).items():
            yield naming.envoy_path(naming.gateway_name(each.name), filename), docs


SidecarEmitter = Callable[[ir.Service], Documents]


def sidecar_emitter(mesh: ir.Mesh, config_dir: str, hosts: Mapping[str, str] | None = None,
                    tls_dir: str = naming.DEFAULT_TLS_DIR) -> SidecarEmitter:
    """A function giving one deployed service's sidecar files (file name -> documents), with what
    every sidecar of the mesh shares computed once: for builds that go one service at a time."""
    ctx = MeshContext(mesh, parse_hosts(hosts or {}), config_dir, tls_dir)
    shared = proxy_parts(mesh.proxy)
    # SDS files are the same for every sidecar reading one TLS directory (all of them, in
    # Kubernetes): their documents, and the hash in them, are made once per secret. The secrets
    # stay referenced from ctx, so their ids stay theirs.
    sds_files: dict[int, list[Json]] = {}

    def sidecar(service: ir.Service) -> Documents:
        clusters, listeners = sidecar_resources(ctx, service)
        files: Documents = {
            naming.BOOTSTRAP_FILE: [bootstrap(mesh, service, config_dir, shared)],
            naming.CDS_FILE: [discovery_response(CLUSTER_TYPE, clusters)],
            naming.LDS_FILE: [discovery_response(LISTENER_TYPE, listeners)],
        }
        for filename, secret in sds_resources(ctx, service).items():
            docs = sds_files.get(id(secret))
            if docs is None:
                docs = sds_files[id(secret)] = [discovery_response(SECRET_TYPE, [secret])]
            files[filename] = docs
        return files

    return sidecar


GatewayEmitter = Callable[[ir.Gateway], Documents]


def gateway_emitter(mesh: ir.Mesh, config_dir: str, hosts: Mapping[str, str] | None = None,
                    tls_dir: str = naming.GATEWAY_TLS_DIR, mesh_tls_dir: str = naming.DEFAULT_TLS_DIR) -> GatewayEmitter:
    """A function giving one gateway's Envoy files; `tls_dir` is where its TLS Secrets are mounted
    (`{secret}` becomes each Secret's name), `mesh_tls_dir` where its own mesh certificate is (as
    for sidecars, `{service}` becomes `gateway-<name>`)."""
    addresses = parse_hosts(hosts or {})
    shared = proxy_parts(mesh.proxy)

    def gateway(each: ir.Gateway) -> Documents:
        return gateway_documents(mesh, each, config_dir, tls_dir, addresses, shared, mesh_tls_dir)

    return gateway
