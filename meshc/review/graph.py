"""The call graph as a picture: Mermaid (GitHub renders it in READMEs and pull requests) or Graphviz DOT.

Nodes are services with their load-balancing policy; edges are `upstreams` with the caller's route
policies (timeout, retries, fail-fast) and the callee's version split. Static-endpoint services are
drawn as external. Output is deterministic: services and edges come sorted from the IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshc.analysis import amplification
from meshc.durations import format_duration as fmt
from meshc import object_names
from meshc.resolve import ir
from meshc.review.spec_view import fault_text, gateway_route_text, match_text

FORMATS = ("mermaid", "dot")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    lines: tuple[str, ...]        # label lines: the name first, then policies
    external: bool
    entry_point: bool


@dataclass(frozen=True, slots=True)
class Edge:
    caller: str
    callee: str
    lines: tuple[str, ...]
    fail_fast: bool


@dataclass(frozen=True, slots=True)
class CallGraph:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def call_graph(mesh: ir.Mesh) -> CallGraph:
    worst = amplification(mesh)
    entry_points = set(mesh.analysis.entry_points or ())
    nodes = tuple(_node(s, worst[s.name].factor if s.name in worst else 1, s.name in entry_points)
                  for s in mesh.services)
    edges = tuple(_edge(s, u, mesh.service(u.service)) for s in mesh.services for u in s.upstreams)
    return CallGraph(mesh.name, nodes + gateway_nodes(mesh), edges + gateway_edges(mesh))


def lb_label(lb: ir.LoadBalancing) -> str:
    key = lb.hash_key
    if key is None:
        return lb.policy.value
    if key.cookie is not None or key.query_parameter is not None:
        on = f"cookie {key.cookie.name}" if key.cookie is not None else f"query {key.query_parameter}"
        return f"{lb.policy.value} on {on}"
    return f"{lb.policy.value} on {'header ' + key.header if key.header else 'source IP'}"


def _node(service: ir.Service, factor: int, entry_point: bool) -> Node:
    listens = f"{service.protocol.value} :{service.port}" if service.port is not None else "client only (no port)"
    lines = [service.name, listens, lb_label(service.load_balancing)]
    if not service.deployed:
        count = len(service.endpoints)
        lines.append(f"external, {count} endpoint{'s' * (count != 1)}")
    if factor > 1:
        lines.append(f"up to {factor} attempts per request")
    return Node(service.name, tuple(lines), not service.deployed, entry_point)


def _edge(caller: ir.Service, upstream: ir.Upstream, callee: ir.Service) -> Edge:
    lines = [f"localPort {upstream.local_port}"]
    if upstream.protocol is not ir.Protocol.TCP:
        lines.append(f"timeout {fmt(upstream.timeout_ms)}")
        lines.append(_retries_label(upstream))
    if len(callee.versions) > 1:
        lines.append(" / ".join(f"{v.name} {v.weight}%" for v in callee.versions))
    lines += route_lines(upstream)
    return Edge(caller.name, upstream.service, tuple(lines), upstream.fail_fast)


# --- request routes and gateways -------------------------------------------------------------

def route_lines(upstream: ir.Upstream) -> list[str]:
    """The callee's routes this caller applies, first match first: `if <match>: <action>`."""
    return [f"if {match_text(r.match) or 'any'}: {_route_action(r)}" for r in upstream.routes]


def _route_action(route: ir.Route) -> str:
    parts = [" / ".join(f"{v.name} {v.weight}%" if len(route.versions) > 1 else v.name for v in route.versions)]
    if route.fault is not None:
        parts.append(fault_text(route.fault))
    if route.mirror is not None:
        parts.append(f"mirror {route.mirror.version or route.mirror.service} {route.mirror.percent:g}%")
    return ", ".join(p for p in parts if p) or "default split"


def gateway_nodes(mesh: ir.Mesh) -> tuple[Node, ...]:
    """Gateways are where requests enter: entry-point nodes named as their Deployment is."""
    return tuple(Node(object_names.gateway(g.name), (
        object_names.gateway(g.name),
        " ".join(f"{'https' if li.tls_secret else 'http'}:{li.port}" for li in g.listeners)), False, True)
        for g in mesh.gateways)


def gateway_edges(mesh: ir.Mesh) -> tuple[Edge, ...]:
    edges = []
    for gateway in mesh.gateways:
        for service in gateway.services:
            lines = tuple(gateway_route_text(r).rsplit(" -> ", 1)[0] for r in gateway.routes if r.service == service)
            edges.append(Edge(object_names.gateway(gateway.name), service, lines, False))
    return tuple(edges)


def _retries_label(upstream: ir.Upstream) -> str:
    if upstream.fail_fast:
        return "fail-fast"
    retries = upstream.retries
    if retries is None:
        return "no retries"
    per_try = f", perTry {fmt(retries.per_try_timeout_ms)}" if retries.per_try_timeout_ms else ""
    return f"retries {retries.attempts}{per_try}"


# --- Mermaid ------------------------------------------------------------------------------

def to_mermaid(graph: CallGraph) -> str:
    out = ["flowchart LR"]
    for node in graph.nodes:
        label = _mermaid_text("<br/>".join(_mermaid_escape(line) for line in node.lines))
        shape = ("{{", "}}") if node.external else (("([", "])") if node.entry_point else ("[", "]"))
        out.append(f"    {_mermaid_id(node.name)}{shape[0]}{label}{shape[1]}")
    for edge in graph.edges:
        label = _mermaid_text("<br/>".join(_mermaid_escape(line) for line in edge.lines))
        arrow = "-.->" if edge.fail_fast else "-->"
        out.append(f"    {_mermaid_id(edge.caller)} {arrow}|{label}| {_mermaid_id(edge.callee)}")
    external = [_mermaid_id(n.name) for n in graph.nodes if n.external]
    if external:
        out.append("    classDef external stroke-dasharray: 5 5")
        out.append(f"    class {','.join(external)} external")
    return "\n".join(out) + "\n"


def _mermaid_id(name: str) -> str:
    # Service names are DNS labels; the prefix keeps Mermaid keywords (`end`, `graph`) from being ids.
    return "svc_" + name.replace("-", "_")


def _mermaid_escape(text: str) -> str:
    return (text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("|", "#124;"))


def _mermaid_text(label: str) -> str:
    return f'"{label}"'


# --- Graphviz DOT -------------------------------------------------------------------------

def to_dot(graph: CallGraph) -> str:
    out = [
        f"digraph {_dot_string(graph.name)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in graph.nodes:
        attributes = [f"label={_dot_label(node.lines)}"]
        if node.external:
            attributes += ['shape=hexagon', 'style="dashed"']
        elif node.entry_point:
            attributes += ['style="rounded,bold"']
        out.append(f"    {_dot_string(node.name)} [{', '.join(attributes)}];")
    for edge in graph.edges:
        attributes = [f"label={_dot_label(edge.lines)}"] + (["style=dashed"] if edge.fail_fast else [])
        out.append(f"    {_dot_string(edge.caller)} -> {_dot_string(edge.callee)} [{', '.join(attributes)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(lines: tuple[str, ...]) -> str:
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'


def render(graph: CallGraph, fmt_name: str) -> str:
    return to_dot(graph) if fmt_name == "dot" else to_mermaid(graph)
