"""A route's request/response header changes and its path prefix rewrite: plain route fields,
no filter and no extra resources."""

from __future__ import annotations

from meshc.emit.envoy.values import Json
from meshc.resolve import ir

OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD"


def route_fields(route: ir.Route) -> Json:
    fields: Json = {}
    for side, changes in (("request", route.request_headers), ("response", route.response_headers)):
        if changes.set:
            fields[f"{side}_headers_to_add"] = [
                {"header": {"key": name, "value": value}, "append_action": OVERWRITE} for name, value in changes.set]
        if changes.remove:
            fields[f"{side}_headers_to_remove"] = list(changes.remove)
    return fields


def action_fields(route: ir.Route) -> Json:
    return {"prefix_rewrite": route.prefix_rewrite} if route.prefix_rewrite is not None else {}
