"""Fault injection (envoy.filters.http.fault) in the caller's outbound listener.

Listener: the filter, with no fault of its own, whenever a route of the upstream injects one.
Route: the route's delay and abort as per-route config. Extra resources: none.
"""

from __future__ import annotations

from meshc.emit.envoy.percent import fractional
from meshc.emit.envoy.values import Json, duration
from meshc.resolve import ir

FILTER = "envoy.filters.http.fault"
TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"


def listener_filter(upstream: ir.Upstream) -> Json | None:
    if not any(r.fault is not None for r in upstream.routes):
        return None
    return {"name": FILTER, "typed_config": {"@type": TYPE}}


def route_config(route: ir.Route) -> Json:
    """The route's typed_per_filter_config entry, or nothing."""
    fault = route.fault
    if fault is None:
        return {}
    config: Json = {"@type": TYPE}
    if fault.delay_ms is not None:
        config["delay"] = {"fixed_delay": duration(fault.delay_ms), "percentage": fractional(fault.delay_percent)}
    if fault.abort_status is not None or fault.abort_grpc_status is not None:
        abort: Json = {"percentage": fractional(fault.abort_percent)}
        if fault.abort_grpc_status is not None:
            abort["grpc_status"] = fault.abort_grpc_status
        else:
            abort["http_status"] = fault.abort_status
        config["abort"] = abort
    return {FILTER: config}
