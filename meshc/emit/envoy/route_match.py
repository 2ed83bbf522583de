"""RouteMatch of a route: path (prefix, exact, RE2 regex), headers, methods and query parameters."""

from __future__ import annotations

from meshc.emit.envoy.values import Json
from meshc.resolve import ir

_PATH_FIELDS = {"prefix": "prefix", "exact": "path"}
METHOD_HEADER = ":method"


def match(route: ir.RouteMatch) -> Json:
    """Envoy's RouteMatch; a route that says nothing about the path matches every path."""
    result: Json = path_match(route.path)
    headers = [header_matcher(h) for h in route.headers]
    if route.methods:
        headers.append(_methods(route.methods))
    if headers:
        result["headers"] = headers
    if route.query:
        result["query_parameters"] = [_query_matcher(q) for q in route.query]
    return result


def path_match(path: ir.PathMatch | None) -> Json:
    if path is None:
        return {"prefix": "/"}
    if path.kind == "regex":
        return {"safe_regex": {"regex": path.value}}
    return {_PATH_FIELDS[path.kind]: path.value}


def string_match(condition: ir.StringMatch) -> Json:
    if condition.kind == "regex":
        return {"safe_regex": {"regex": condition.value}}
    return {condition.kind: condition.value}


def header_matcher(header: ir.NamedMatch) -> Json:
    condition = header.match
    if condition.kind == "present":
        return {"name": header.name, "present_match": True}
    if condition.kind == "absent":
        return {"name": header.name, "present_match": True, "invert_match": True}
    return {"name": header.name, "string_match": string_match(condition)}


def _query_matcher(query: ir.NamedMatch) -> Json:
    if query.match.kind == "present":
        return {"name": query.name, "present_match": True}
    return {"name": query.name, "string_match": string_match(query.match)}


def _methods(methods: tuple[str, ...]) -> Json:
    if len(methods) == 1:
        return {"name": METHOD_HEADER, "string_match": {"exact": methods[0]}}
    return {"name": METHOD_HEADER, "string_match": {"safe_regex": {"regex": f"^({'|'.join(methods)})$"}}}
