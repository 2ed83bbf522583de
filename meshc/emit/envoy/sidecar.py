"""One sidecar's xDS resources: its clusters (cds.yaml) and listeners (lds.yaml), in IR order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshc.emit.envoy.access_log import access_logs
from meshc.emit.envoy.clusters import local_app_cluster, targets, upstream_clusters
from meshc.emit.envoy.hosts import HostAddress
from meshc.emit.envoy.listeners import inbound_listener, outbound_listener
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
    services: dict[str, ir.Service] = field(init=False)
    http_logs: list[Json] = field(init=False)
    tcp_logs: list[Json] = field(init=False)
    cluster_cache: dict[_CacheKey, list[Json]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.services = {s.name: s for s in self.mesh.services}
        self.http_logs = access_logs(self.mesh.proxy.access_log)
        self.tcp_logs = access_logs(self.mesh.proxy.access_log, tcp=True)


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
        clusters += _clusters(ctx, group)
    listeners = [inbound_listener(service, ctx.mesh.proxy.inbound_port, ctx.http_logs, ctx.tcp_logs)] \
        if takes_calls else []
    for upstream in service.upstreams:
        callee_targets = targets(ctx.services[upstream.service], variants[id(upstream)])
        listeners.append(outbound_listener(upstream, callee_targets, ctx.http_logs, ctx.tcp_logs))
    return clusters, listeners


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
    destination = group.upstreams[0].destination
    retries = any(u.retries is not None for u in group.upstreams)
    key = (id(destination), retries, group.variant)
    cached = ctx.cluster_cache.get(key)
    if cached is None:
        cached = ctx.cluster_cache[key] = upstream_clusters(
            group.callee, destination, retries, group.variant, ctx.mesh.proxy.inbound_port, ctx.mesh.namespace,
            ctx.hosts)
    return cached
