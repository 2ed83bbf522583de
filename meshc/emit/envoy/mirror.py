"""Request mirroring: a copy of a share of a route's requests to another version or service; the
caller gets the primary's answer, the copy's is dropped.

Listener: no filter (the router mirrors). Route: request_mirror_policies. Extra resources: the
clusters of a mirrored service the caller does not call itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshc.emit import naming
from meshc.emit.envoy.clusters import Target
from meshc.emit.envoy.percent import runtime_fraction
from meshc.emit.envoy.values import Json
from meshc.resolve import ir


def mirrored_version(mirror: ir.Mirror, services: Mapping[str, ir.Service]) -> ir.Version | None:
    """The version that receives the copies (None for a service of static endpoints)."""
    target = services[mirror.service]
    if not target.deployed:
        return None
    wanted = mirror.version
    return next(v for v in target.versions if wanted is None or v.name == wanted)


def cluster(mirror: ir.Mirror, upstream: ir.Upstream, targets: Sequence[Target],
            services: Mapping[str, ir.Service]) -> str:
    version = mirrored_version(mirror, services)
    if mirror.service == upstream.service:
        # this caller's own copy of the version's cluster (a fail_fast caller's copy is renamed)
        return next(t.cluster for t in targets if t.version == version)
    return naming.cluster_name(mirror.service, version)


def route_fields(route: ir.Route, upstream: ir.Upstream, targets: Sequence[Target],
                 services: Mapping[str, ir.Service]) -> Json:
    """The route action's request_mirror_policies, or nothing."""
    if route.mirror is None:
        return {}
    return {"request_mirror_policies": [{
        "cluster": cluster(route.mirror, upstream, targets, services),
        "runtime_fraction": runtime_fraction(route.mirror.percent),
    }]}


def extra_services(caller: ir.Service) -> list[str]:
    """Services mirrored to that the caller does not call: their clusters must exist in its sidecar."""
    called = {u.service for u in caller.upstreams}
    mirrored = {r.mirror.service for u in caller.upstreams for r in u.routes if r.mirror is not None}
    return sorted(mirrored - called)
