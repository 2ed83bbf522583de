"""One sidecar's xDS resources: its clusters (cds.yaml) and listeners (lds.yaml), in IR order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshc.emit import naming
from meshc.emit.envoy import mirror, rbac, tls
from meshc.emit.envoy.access_log import access_logs
from meshc.emit.envoy.bootstrap import config_dir_of
from meshc.emit.envoy.clusters import local_app_cluster, targets, upstream_clusters
from meshc.emit.envoy.hosts import HostAddress
from meshc.emit.envoy.listeners import OPEN, InboundGuard, inbound_listener, outbound_listener
from meshc.emit.envoy.values import Json
from meshc.resolve import ir

FAIL_FAST_VARIANT = "fail_fast"

# (id of the destination, route retries, variant): several callers of one service share its clusters.
_CacheKey = tuple[int, bool, str | None]


@dataclass
class MeshContext:
    """What every sidecar of one mesh needs, computed once per build."""

    mesh: ir.Mesh
    hosts: Mapping[str, HostAddress]
    config_dir: str = naming.DEFAULT_CONFIG_DIR
    tls_dir: str = naming.DEFAULT_TLS_DIR
    services: dict[str, ir.Service] = field(init=False)
    http_logs: list[Json] = field(init=False)
    tcp_logs: list[Json] = field(init=False)
    peer_logs: tuple[list[Json], list[Json]] = field(init=False)   # (http, tcp) with the caller's identity
    cluster_cache: dict[_CacheKey, list[Json]] = field(init=False, default_factory=dict)
    # kept, so that their ids (cluster_cache keys) stay theirs for the whole build
    own_destinations: dict[str, ir.Destination] = field(init=False, default_factory=dict)

    def own_destination(self, service: ir.Service) -> ir.Destination:
        """The destination policies a service declares, as a caller without overrides applies them."""
        if service.name not in self.own_destinations:
            self.own_destinations[service.name] = ir.Destination(
                service.load_balancing, service.connect_timeout_ms, service.outlier_detection,
                service.circuit_breaker, service.health_check)
        return self.own_destinations[service.name]
    socket_cache: dict[tuple[str, str], Json | None] = field(init=False, default_factory=dict)
    # (id of a cached cluster list, callee, caller's config directory) -> those clusters with the
    # callee's transport socket: every caller in one config directory shares them
    secured_cache: dict[tuple[int, str, str], list[Json]] = field(init=False, default_factory=dict)
    sds_cache: dict[str, dict[str, Json]] = field(init=False, default_factory=dict)
    secrets_cache: dict[str, dict[str, Json]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.services = {s.name: s for s in self.mesh.services}
        self.http_logs = access_logs(self.mesh.proxy.access_log)
        self.tcp_logs = access_logs(self.mesh.proxy.access_log, tcp=True)
        self.peer_logs = (access_logs(self.mesh.proxy.access_log, peer_identity=True),
                          access_logs(self.mesh.proxy.access_log, tcp=True, peer_identity=True))

    def sds_config(self, service: ir.Service) -> dict[str, Json]:
        """Per config directory (one for the whole mesh in Kubernetes), built once and shared."""
        directory = config_dir_of(self.config_dir, service.name)
        cached = self.sds_cache.get(directory)
        if cached is None:
            cached = self.sds_cache[directory] = tls.sds_config(directory)
        return cached


@dataclass(frozen=True, slots=True)
class _Group:
    """Upstream entries of one caller that share one set of clusters (same callee, same variant)."""

    callee: ir.Service
    variant: str | None
    upstreams: tuple[ir.Upstream, ...]


def sidecar_resources(ctx: MeshContext, service: ir.Service) -> tuple[list[Json], list[Json]]:
    """(clusters, listeners) of the sidecar of `service`."""
    variants = _variants(service)
    # A client-only service (no port) takes no calls: no inbound listener, no cluster to the app.
    takes_calls = service.port is not None
    clusters = [local_app_cluster(service)] if takes_calls else []
    for group in _groups(ctx, service, variants):
        clusters += _secured(ctx, service, group.callee, _clusters(ctx, group))
    for name in mirror.extra_services(service):
        callee = ctx.services[name]
        clusters += _secured(ctx, service, callee, _clusters(ctx, _Group(callee, None, ())))
    guard = _inbound_guard(ctx, service)
    http_logs, tcp_logs = ctx.peer_logs if guard is not OPEN else (ctx.http_logs, ctx.tcp_logs)
    listeners = [inbound_listener(service, ctx.mesh.proxy.inbound_port, http_logs, tcp_logs, guard)] \
        if takes_calls else []
    for upstream in service.upstreams:
        callee_targets = targets(ctx.services[upstream.service], variants[id(upstream)])
        listeners.append(outbound_listener(upstream, callee_targets, ctx.http_logs, ctx.tcp_logs, ctx.services))
    return clusters, listeners


def sds_resources(ctx: MeshContext, service: ir.Service) -> dict[str, Json]:
    """SDS file name -> its secret, for a sidecar with an identity; none without one."""
    if service.identity is None:
        return {}
    directory = tls.tls_dir_of(ctx.tls_dir, service.name)   # one for the whole mesh in Kubernetes
    cached = ctx.secrets_cache.get(directory)
    if cached is None:
        cached = ctx.secrets_cache[directory] = tls.sds_resources(directory)
    return cached


def _inbound_guard(ctx: MeshContext, service: ir.Service) -> InboundGuard:
    """mTLS and authorization on the inbound listener; OPEN (plaintext, anyone) when mtls is off."""
    if not rbac.needs_rbac(service):
        return OPEN
    chains, listener_filters = tls.inbound_chains(service, ctx.sds_config(service))
    return InboundGuard(http_filters=rbac.http_filters(service), network_filters=rbac.network_filters(service),
                        listener_filters=listener_filters, chains=chains,
                        tcp_proxy_fields=tls.inbound_tcp_proxy_fields(service),
                        listener_fields=tls.inbound_listener_fields(service))


def _secured(ctx: MeshContext, caller: ir.Service, callee: ir.Service, clusters: list[Json]) -> list[Json]:
    """A caller's clusters for an mTLS callee, with the caller's certificate and the callee's identity.
    The socket depends on the caller's config directory only through its SDS path: built once per pair."""
    if caller.identity is None or callee.identity is None:
        return clusters
    key = (callee.name, config_dir_of(ctx.config_dir, caller.name))
    if key not in ctx.socket_cache:
        ctx.socket_cache[key] = tls.mesh_upstream_socket(callee, ctx.sds_config(caller))
    socket = ctx.socket_cache[key]
    if socket is None:
        return clusters
    # `clusters` comes from ctx.cluster_cache, which keeps it (and so its id) for the whole build
    secured_key = (id(clusters), *key)
    secured = ctx.secured_cache.get(secured_key)
    if secured is None:
        secured = ctx.secured_cache[secured_key] = [{**cluster, "transport_socket": socket} for cluster in clusters]
    return secured


def _variants(service: ir.Service) -> dict[int, str | None]:
    """A caller that calls one service both fail_fast and not needs two copies of its clusters,
    since fail_fast changes the copy (pending queue, outlier detection); the fail_fast one is renamed."""
    modes: dict[str, set[bool]] = {}
    for upstream in service.upstreams:
        modes.setdefault(upstream.service, set()).add(upstream.fail_fast)
    return {id(u): FAIL_FAST_VARIANT if u.fail_fast and len(modes[u.service]) > 1 else None
            for u in service.upstreams}


def _groups(ctx: MeshContext, service: ir.Service, variants: dict[int, str | None]) -> list[_Group]:
    grouped: dict[tuple[str, str | None], list[ir.Upstream]] = {}
    for upstream in service.upstreams:
        grouped.setdefault((upstream.service, variants[id(upstream)]), []).append(upstream)
    return [_Group(ctx.services[callee], variant, tuple(upstreams))
            for (callee, variant), upstreams in grouped.items()]


def _clusters(ctx: MeshContext, group: _Group) -> list[Json]:
    # Entries of one group have equal destinations; a retry budget is added if any of them retries.
    # A group without entries is a service only mirrored to: its own policies, and no retries.
    destination = group.upstreams[0].destination if group.upstreams else ctx.own_destination(group.callee)
    retries = any(u.retries is not None or any(r.retries is not None for r in u.routes) for u in group.upstreams)
    key = (id(destination), retries, group.variant)
    cached = ctx.cluster_cache.get(key)
    if cached is None:
        cached = ctx.cluster_cache[key] = upstream_clusters(
            group.callee, destination, retries, group.variant, ctx.mesh.proxy.inbound_port, ctx.mesh.namespace,
            ctx.hosts)
    return cached

