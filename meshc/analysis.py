"""Analyze stage: what a compiler can see across the whole call graph and no single route shows.

Runs on the IR (effective values, defaults applied): retries that cannot fit their timeout, retry
amplification along call paths, timeout budgets between callers and callees, cycles, and services
nobody calls. Each check is one function; ANALYSES lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from meshc.addresses import is_ip_literal
from meshc.diagnostics import Diagnostic, warning
from meshc.resolve import ir
from meshc.vocabulary import GRPC_RETRY_ON
from meshc.durations import format_duration as fmt

Edge = tuple[ir.Service, ir.Upstream]


def _edges(mesh: ir.Mesh) -> Iterator[Edge]:
    for service in mesh.services:
        for upstream in service.upstreams:
            yield service, upstream


def _http(upstream: ir.Upstream) -> bool:
    """Route policies (timeout, retries) exist only for HTTP-family callees; tcp is proxied as bytes."""
    return upstream.protocol is not ir.Protocol.TCP


def tries(upstream: ir.Upstream) -> int:
    """How many times one request through this edge may reach the callee: 1 + retries (the most
    any of the callee's routes for this caller allows)."""
    if not _http(upstream):
        return 1
    policies = [upstream.retries, *(r.retries for r in upstream.routes)]
    return 1 + max((p.attempts for p in policies if p is not None), default=0)


def backoff_worst_ms(retries: ir.RetryPolicy) -> int:
    """The longest Envoy may pause between tries, summed: retry n waits up to (2^n - 1) x base, capped."""
    if retries.backoff is None:
        return 0
    base, cap = retries.backoff.base_interval_ms, retries.backoff.max_interval_ms
    return sum(min((2 ** n - 1) * base, cap) for n in range(1, retries.attempts + 1))


def worst_wait_ms(upstream: ir.Upstream) -> int:
    """The longest a caller waits on this edge: its route timeout, or less when every try is bounded."""
    retries = upstream.retries
    if retries is None or retries.per_try_timeout_ms is None:
        return upstream.timeout_ms
    bounded = tries(upstream) * retries.per_try_timeout_ms + backoff_worst_ms(retries)
    return min(upstream.timeout_ms, bounded)


def retries_fit_timeout(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    for service, upstream in _edges(mesh):
        retries = upstream.retries
        if retries is None or retries.per_try_timeout_ms is None or not _http(upstream):
            continue
        tries = retries.attempts + 1
        needed = retries.per_try_timeout_ms * tries
        if retries.per_try_timeout_ms > upstream.timeout_ms:
            yield warning("W205", f"{service.name} -> {upstream.service}: perTryTimeout "
                          f"{fmt(retries.per_try_timeout_ms)} is longer than the route timeout "
                          f"{fmt(upstream.timeout_ms)}", retries.span)
        elif upstream.timeout_ms < needed:
            yield warning("W201", f"{service.name} -> {upstream.service}: retries cannot all happen: "
                          f"{tries} tries x perTryTimeout {fmt(retries.per_try_timeout_ms)} = {fmt(needed)} "
                          f"exceeds the route timeout {fmt(upstream.timeout_ms)}, which includes every retry",
                          retries.span, hint="raise timeout, or lower attempts or perTryTimeout")


def route_retries_fit_timeout(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    """W201 for a request route whose own timeout or retries leave no room for every try (once per
    route: the first caller that shows it)."""
    seen: set[tuple[str, int]] = set()
    for service, upstream in _edges(mesh):
        for route in upstream.routes:
            retries, timeout = route.retries, route.timeout_ms
            if retries is None or retries.per_try_timeout_ms is None or timeout is None:
                continue
            needed = retries.per_try_timeout_ms * (retries.attempts + 1)
            if timeout < needed and (upstream.service, route.index) not in seen:
                seen.add((upstream.service, route.index))
                yield warning("W201", f"{service.name} -> {upstream.service}, route {route.name or route.index + 1}: "
                              f"retries cannot all happen: {retries.attempts + 1} tries x perTryTimeout "
                              f"{fmt(retries.per_try_timeout_ms)} = {fmt(needed)} exceeds the route timeout "
                              f"{fmt(timeout)}", route.span, hint="raise the route's timeout, or lower its retries")


def grpc_retry_conditions(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    """gRPC errors travel as HTTP 200 with a grpc-status trailer: `5xx` never matches them."""
    for service, upstream in _edges(mesh):
        retries = upstream.retries
        if upstream.protocol is not ir.Protocol.GRPC or retries is None:
            continue
        if not GRPC_RETRY_ON.intersection(retries.retry_on):
            yield warning("W208", f"{service.name} -> {upstream.service}: '{upstream.service}' speaks gRPC but retryOn "
                          f"({', '.join(retries.retry_on)}) names no gRPC condition, so failed calls (grpc-status "
                          "UNAVAILABLE, ...) are never retried", retries.span,
                          hint="add unavailable (and perhaps resource-exhausted, cancelled) to retryOn")


def http_retry_conditions(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    """The converse of W208: gRPC conditions read the grpc-status a gRPC answer carries, and an
    HTTP service's answers carry none, so retryOn naming only them never retries anything."""
    for service, upstream in _edges(mesh):
        retries = upstream.retries
        if upstream.protocol not in (ir.Protocol.HTTP, ir.Protocol.HTTP2) or retries is None:
            continue
        if set(retries.retry_on) <= GRPC_RETRY_ON:
            yield warning("W212", f"{service.name} -> {upstream.service}: '{upstream.service}' speaks "
                          f"{upstream.protocol.value}, not gRPC, but retryOn ({', '.join(retries.retry_on)}) names "
                          "only gRPC conditions, so no request is ever retried", retries.span,
                          hint="use HTTP conditions: 5xx, gateway-error, reset, connect-failure, or status codes")


def _callers(mesh: ir.Mesh) -> dict[str, list[Edge]]:
    callers: dict[str, list[Edge]] = {s.name: [] for s in mesh.services}
    for service, upstream in _edges(mesh):
        callers[upstream.service].append((service, upstream))
    return callers


def strongly_connected(mesh: ir.Mesh) -> list[list[str]]:
    """Tarjan's algorithm, iterative (meshes may be deep): components in a stable order."""
    graph = {s.name: [u.service for u in s.upstreams] for s in mesh.services}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if child < len(graph[node]):
                work.append((node, child + 1))
                nxt = graph[node][child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cyclic(mesh: ir.Mesh) -> list[list[str]]:
    """The components of the call graph that hold a cycle. W303 and the amplification both ask,
    in one analyze: the last mesh's answer is kept (one mesh, the one being analyzed)."""
    global _last_cyclic
    if _last_cyclic is not None and _last_cyclic[0] is mesh:
        return _last_cyclic[1]
    components = strongly_connected(mesh)
    self_calls = {s.name for s in mesh.services if any(u.service == s.name for u in s.upstreams)}
    cyclic = [c for c in components if len(c) > 1 or c[0] in self_calls]
    _last_cyclic = (mesh, cyclic)
    return cyclic


_last_cyclic: tuple[ir.Mesh, list[list[str]]] | None = None


def cycles(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    for component in _cyclic(mesh):
        first = mesh.service(component[0])
        members = " -> ".join(component + [component[0]])
        yield warning("W303", f"the call graph has a cycle through {members}: retries and timeouts along it "
                      "have no bound", first.span)


@dataclass(frozen=True, slots=True)
class Amplification:
    """The worst case number of attempts reaching a service per request, and the path that causes it."""

    factor: int
    path: tuple[str, ...]          # from a service nobody upstream retries into, to this one
    last_hop: ir.Upstream | None   # the edge into this service on that path


def amplification(mesh: ir.Mesh) -> dict[str, Amplification]:
    """Per service: the max over call paths of prod(1 + retries) per hop (services on cycles excluded)."""
    factor, best = _factors(mesh)
    return {name: Amplification(factor[name], tuple(_path_to(name, best)), (best[name] or (None, None))[1])
            for name in sorted(factor)}


def _factors(mesh: ir.Mesh) -> tuple[dict[str, int], dict[str, Edge | None]]:
    """Per service off cycles: its amplification factor, and the edge into it on the worst path."""
    in_cycle = {name for component in _cyclic(mesh) for name in component}
    services = {s.name: s for s in mesh.services}
    factor = {name: 1 for name in services}
    best: dict[str, Edge | None] = {name: None for name in services}
    for name in _topological(mesh, in_cycle):
        for upstream in services[name].upstreams:
            if upstream.service in in_cycle:
                continue
            reached = factor[name] * tries(upstream)
            if reached > factor[upstream.service]:
                factor[upstream.service] = reached
                best[upstream.service] = (services[name], upstream)
    for name in in_cycle:
        del factor[name], best[name]
    return factor, best


def retry_amplification(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    budget = mesh.analysis.max_retry_amplification
    factor, best = _factors(mesh)
    # Only the services over the budget need their worst path spelled out.
    for name in sorted(name for name, reached in factor.items() if reached > budget):
        edge = best[name]
        if edge is not None:
            yield warning("W301", f"retry amplification: {' -> '.join(_path_to(name, best))} reaches '{name}' up to "
                          f"{factor[name]} times per request (budget {budget}, spec.analysis."
                          "maxRetryAmplification)", edge[1].span,
                          hint="retry at one layer only, or lower attempts along the path")


def _topological(mesh: ir.Mesh, skip: set[str]) -> list[str]:
    indegree = {s.name: 0 for s in mesh.services if s.name not in skip}
    for _, upstream in _edges(mesh):
        if upstream.service in indegree:
            indegree[upstream.service] += 1
    for service in mesh.services:
        if service.name in skip:
            for upstream in service.upstreams:
                if upstream.service in indegree:
                    indegree[upstream.service] -= 1
    ready = [name for name, degree in indegree.items() if degree == 0]
    order = []
    graph = {s.name: s for s in mesh.services}
    while ready:
        name = ready.pop()
        order.append(name)
        for upstream in graph[name].upstreams:
            if upstream.service in indegree:
                indegree[upstream.service] -= 1
                if indegree[upstream.service] == 0:
                    ready.append(upstream.service)
    return order


def _path_to(name: str, best: dict[str, Edge | None]) -> list[str]:
    path = [name]
    edge = best[name]
    while edge is not None:
        path.append(edge[0].name)
        edge = best[edge[0].name]
    return list(reversed(path))


def timeout_budgets(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    """A caller's (per-try) timeout shorter than the longest its callee may wait downstream."""
    services = {s.name: s for s in mesh.services}
    # Each callee's slowest HTTP call, found once: a callee with many callers was measured per caller.
    slowest_of: dict[str, tuple[ir.Upstream, int] | None] = {}
    for service, upstream in _edges(mesh):
        if not _http(upstream):
            continue
        callee = services[upstream.service]
        if callee.name not in slowest_of:
            slowest_of[callee.name] = _slowest(callee)
        found = slowest_of[callee.name]
        if found is None:
            continue
        slowest, waits = found
        retries = upstream.retries
        budget = retries.per_try_timeout_ms if retries and retries.per_try_timeout_ms else upstream.timeout_ms
        if budget < waits:
            what = "per-try timeout" if retries and retries.per_try_timeout_ms else "timeout"
            yield warning("W302", f"{service.name} -> {callee.name}: {what} {fmt(budget)} is shorter than the "
                          f"{fmt(worst_wait_ms(slowest))} '{callee.name}' may wait on '{slowest.service}' "
                          f"({_wait_reason(slowest)}): the caller gives up while the callee still works",
                          upstream.span, hint=f"give {service.name} -> {callee.name} more time, or let "
                          f"{callee.name} -> {slowest.service} give up sooner")


def _slowest(service: ir.Service) -> tuple[ir.Upstream, int] | None:
    """The service's HTTP call it may wait on longest (the first of equals), and that wait."""
    found: tuple[ir.Upstream, int] | None = None
    for upstream in service.upstreams:
        if _http(upstream):
            waits = worst_wait_ms(upstream)
            if found is None or waits > found[1]:
                found = (upstream, waits)
    return found


def _wait_reason(upstream: ir.Upstream) -> str:
    retries = upstream.retries
    if retries is None or retries.per_try_timeout_ms is None or worst_wait_ms(upstream) == upstream.timeout_ms:
        return "its route timeout, retries included"
    backoff = backoff_worst_ms(retries)
    pauses = f" + backoff up to {fmt(backoff)}" if backoff else ""
    return f"{tries(upstream)} tries x perTryTimeout {fmt(retries.per_try_timeout_ms)}{pauses}"


def uncalled_services(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    entry_points = mesh.analysis.entry_points
    if entry_points is None:
        return
    called = {u.service for _, u in _edges(mesh)} | {name for g in mesh.gateways for name in g.services}
    for service in mesh.services:
        # a client-only service (no port) cannot be called: it starts calls, like an entry point
        if service.name not in called and service.name not in entry_points and service.port is not None:
            yield warning("W304", f"service '{service.name}' is called by no service and is not listed in "
                          "spec.analysis.entryPoints", service.span)


# --- zero trust ----------------------------------------------------------------------------

def uncallable_services(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    """Under mTLS a service's inbound admits only its allowed callers: with none it refuses everyone.

    Entry points are reached from outside the mesh (their extraCallers, an ingress); as W304 does,
    a mesh that declares no entryPoints is taken to enter at every service nobody calls."""
    if mesh.analysis.entry_points is None:
        return
    entry_points = set(mesh.analysis.entry_points)
    for service in mesh.deployed_services:
        if service.mtls is ir.MtlsMode.OFF or service.allowed_callers or service.name in entry_points \
                or service.port is None:    # a client-only service takes no calls by design
            continue
        yield warning("W501", f"under mTLS ({service.mtls}) '{service.name}' accepts no caller: no service lists it "
                      "in upstreams and it has no extraCallers, so every request to it is refused",
                      service.span, hint="give it extraCallers (an ingress), or list it in spec.analysis.entryPoints "
                      "if something outside the mesh reaches it another way")


def open_external_egress(mesh: ir.Mesh) -> Iterator[Diagnostic]:
    """NetworkPolicies take IP blocks only: an endpoint named by host opens its port to every address."""
    security = mesh.security
    if security is None or not security.enabled or not security.network_policies:
        return
    called = {u.service for _, u in _edges(mesh)}
    for service in mesh.services:
        if service.deployed or service.name not in called:
            continue
        for endpoint in service.endpoints:
            if not is_ip_literal(endpoint.address):
                yield warning("W503", f"'{endpoint.address}' of '{service.name}' is a host name, which a NetworkPolicy "
                              f"cannot name: its callers' egress on port {endpoint.port} is open to any address",
                              endpoint.span, hint="list the service's IP addresses as endpoints to confine egress to "
                              "them, or accept the open port (set spec.security.networkPolicies: false to drop them)")


Analysis = Callable[[ir.Mesh], Iterable[Diagnostic]]

ANALYSES: tuple[Analysis, ...] = (
    retries_fit_timeout,
    route_retries_fit_timeout,
    grpc_retry_conditions,
    http_retry_conditions,
    retry_amplification,
    timeout_budgets,
    cycles,
    uncalled_services,
    uncallable_services,
    open_external_egress,
)


def analyze(mesh: ir.Mesh) -> list[Diagnostic]:
    return [diagnostic for analysis in ANALYSES for diagnostic in analysis(mesh)]
