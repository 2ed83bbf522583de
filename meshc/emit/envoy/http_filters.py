"""The HTTP filters of each connection manager, in the one fixed order Envoy runs them.

Each request-level feature lives in its own module and says whether a listener needs its filter;
this module alone decides the order: authorization first (an unknown caller spends no token), then
rate limiting, fault injection (a limited request is refused before it could be delayed), and the
router always last.
"""

from __future__ import annotations

from meshc.emit.envoy import fault, local_ratelimit
from meshc.emit.envoy.values import ROUTER_FILTERS, Json
from meshc.resolve import ir


def inbound(service: ir.Service, authorization: list[Json] | None = None) -> list[Json]:
    """Filters of the listener where callers' requests enter the pod; `authorization`: the RBAC
    filters that guard it (meshc.emit.envoy.rbac), if any."""
    return _in_order([*(authorization or []), local_ratelimit.listener_filter(service)])


def outbound(upstream: ir.Upstream) -> list[Json]:
    """Filters of the listener where the app reaches one upstream."""
    return _in_order([fault.listener_filter(upstream)])


def _in_order(filters: list[Json | None]) -> list[Json]:
    present = [f for f in filters if f is not None]
    return [*present, *ROUTER_FILTERS] if present else ROUTER_FILTERS
