"""Meaning across the spec: references, uniqueness, weights, ports, contradictions.

Each check is one small function from the validated model to diagnostics; CHECKS lists them in
the order they run. All of them run, so a user sees every problem at once.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field   # `field` names the fields checks loop over
from typing import Any

from meshc.addresses import is_ip_literal
from meshc.diagnostics import Diagnostic, Path, Span, error, warning
from meshc.load import Positions
from meshc import object_names
from meshc import defaults as builtin
from meshc.defaults import IMPLICIT_VERSION
from meshc.object_names import RESERVED_SERVICE_NAMES

from meshc.validate.models import (
    Affinity,
    CircuitBreaker,
    DisruptionBudget,
    EnvSource,
    Gateway,
    GatewayRouteMatch,
    HeaderChanges,
    LabelSelector,
    LabelSelectorRequirement,
    LoadBalancer,
    Mesh,
    Model,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PathMatch,
    PodAffinityTerm,
    Probe,
    Resources,
    Retries,
    Route,
    RouteMatch,
    Service,
    StringMatch,
    Toleration,
    spec_names,
)
from meshc.defaults import APP_RESOURCES, PROXY_RESOURCES
from meshc.object_names import RESERVED_CONTAINERS, RESERVED_VOLUMES, reserved_pod_key
from meshc.quantities import parse_quantity
from meshc.env_templates import PLACEHOLDERS, template_fields
from meshc.validate.header_formats import format_problem
from meshc.validate.structural import dotted
from meshc.vocabulary import GRPC_HEALTH_PATH, HASH_POLICIES, RETRY_ON, FailurePolicy, LbPolicy, Protocol

MAX_K8S_NAME = 63
# Envoy keeps the sum of one locality's endpoint weights in a uint32 (LocalityLbEndpoints docs);
# ring_hash and maglev refuse a cluster over it at load time; the API documents it for every policy.
MAX_ENDPOINT_WEIGHT_SUM = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Context:
    """What every semantic check reads: the validated spec and where each of its values was written."""

    mesh: Mesh
    positions: Positions
    # Each service with its path, made once: some fifty checks each walk every service.
    services: tuple[tuple[Path, Service], ...] = dataclass_field(init=False)
    # Every route with its path, its service and its index, made once: most services have none,
    # and a dozen checks walk the routes.
    routes: tuple[tuple[Path, Service, int, Route], ...] = dataclass_field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", tuple((("spec", "services", index), service)
                                                   for index, service in enumerate(self.mesh.spec.services)))
        object.__setattr__(self, "routes", tuple((path + ("routes", index), service, index, route)
                                                 for path, service in self.services if service.routes
                                                 for index, route in enumerate(service.routes)))

    def at(self, *path: str | int) -> Span:
        return self.positions.value(path)

    def key(self, *path: str | int) -> Span:
        return self.positions.key(path)


def services(ctx: Context) -> tuple[tuple[Path, Service], ...]:
    return ctx.services


def _repeats(keys: Iterable[Hashable]) -> Iterator[int]:
    """The index of every entry of a list whose key an earlier entry already has."""
    seen: set[Hashable] = set()
    for index, key in enumerate(keys):
        if key in seen:
            yield index
        seen.add(key)


def _hint(name: str, known: Iterable[str]) -> str | None:
    import difflib   # only a misspelt name needs it: not imported by every validate

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def duplicate_services(ctx: Context) -> Iterator[Diagnostic]:
    yield from _duplicate_names([(path, service.name) for path, service in services(ctx)], ctx.positions)


def _duplicate_names(named: list[tuple[Path, str]], positions: Positions) -> Iterator[Diagnostic]:
    first: dict[str, int] = {}
    for path, name in named:
        where = path + ("name",)
        if name in first:
            yield error("E202", f"service '{name}' is defined twice (first on line {first[name]})",
                        positions.value(where), where)
        first.setdefault(name, positions.value(where).line)


def unknown_upstreams(ctx: Context) -> Iterator[Diagnostic]:
    calls = [(path + ("upstreams", index), service.name, upstream.service)
             for path, service in services(ctx) for index, upstream in enumerate(service.upstreams)]
    yield from _unknown_callees(calls, {s.name for s in ctx.mesh.spec.services}, ctx.positions)


# "Did you mean" is looked for for this many misspelt names at most, and for fewer in a huge mesh:
# each search compares the name with every service, and a hostile spec can hold 100,000 of each.
MAX_SPELLING_HINTS = 20
MAX_SPELLING_COMPARISONS = 200_000


def _unknown_callees(calls: Sequence[tuple[Path, str, str]], names: set[str],
                     positions: Positions) -> Iterator[Diagnostic]:
    hints_left = min(MAX_SPELLING_HINTS, MAX_SPELLING_COMPARISONS // max(len(names), 1))
    for path, caller, callee in calls:
        if callee not in names:
            where = path + ("service",)
            hint = _hint(callee, names) if hints_left > 0 else None
            hints_left -= 1
            suffix = f"; did you mean '{hint}'?" if hint else ""
            yield error("E201", f"service '{caller}' calls '{callee}', which is not a service of this mesh{suffix}",
                        positions.value(where), where, hint)


def duplicate_versions(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        versions = service.versions or ()
        for index in _repeats(version.name for version in versions):
            where = path + ("versions", index, "name")
            yield error("E203", f"service '{service.name}' has two versions named '{versions[index].name}'",
                        ctx.at(*where), where)


def duplicate_local_ports(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        owners: dict[int, str] = {}
        for index, upstream in enumerate(service.upstreams):
            where = path + ("upstreams", index, "localPort")
            if upstream.local_port in owners:
                yield error("E204", f"localPort {upstream.local_port} of '{service.name}' is already used for "
                            f"'{owners[upstream.local_port]}'", ctx.at(*where), where)
            owners.setdefault(upstream.local_port, upstream.service)


def local_port_clashes(ctx: Context) -> Iterator[Diagnostic]:
    proxy = ctx.mesh.spec.proxy
    taken = {proxy.admin_port: "the proxy adminPort", proxy.inbound_port: "the proxy inboundPort",
             proxy.stats_port: "the proxy statsPort"}
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            where = path + ("upstreams", index, "localPort")
            clash = f"the application port of '{service.name}'" if upstream.local_port == service.port else \
                taken.get(upstream.local_port)
            if clash:
                yield error("E205", f"localPort {upstream.local_port} clashes with {clash}", ctx.at(*where), where)


def proxy_port_clashes(ctx: Context) -> Iterator[Diagnostic]:
    proxy = ctx.mesh.spec.proxy
    ports = (("adminPort", proxy.admin_port), ("inboundPort", proxy.inbound_port), ("statsPort", proxy.stats_port))
    seen: dict[int, str] = {}
    for field, port in ports:
        if port in seen:
            yield error("E214", f"proxy {field} {port} is the same as {seen[port]}",
                        ctx.at("spec", "proxy", field), ("spec", "proxy", field))
        seen.setdefault(port, field)
    for path, service in services(ctx):
        if service.endpoints is None and service.port in seen:
            yield error("E214", f"service '{service.name}' listens on port {service.port}, which its sidecar uses "
                        f"as {seen[service.port]}", ctx.at(*path, "port"), path + ("port",))


def version_weights(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        versions = service.versions or []
        weights = [v.weight for v in versions]
        if len(versions) > 1 and any(w is None for w in weights):
            if all(w is None for w in weights):
                yield error("E218", f"service '{service.name}' has {len(versions)} versions but no weights; set a "
                            "weight (percent) on each version", ctx.key(*path, "versions"), path + ("versions",))
                continue
            index = weights.index(None)
            where = path + ("versions", index)
            yield error("E218", f"version '{versions[index].name}' of '{service.name}' has no weight while other "
                        "versions do", ctx.at(*where), where)
            continue
        total = sum(w for w in weights if w is not None)
        if versions and weights[0] is not None and total != 100:
            yield error("E206", f"version weights of '{service.name}' sum to {total}, not 100",
                        ctx.key(*path, "versions"), path + ("versions",),
                        hint="weights are percentages of requests")
        routed = _routed_versions(service)
        for index, version in enumerate(versions):
            if version.weight == 0 and len(versions) > 1 and version.name not in routed:
                where = path + ("versions", index, "weight")
                yield warning("W204", f"version '{version.name}' of '{service.name}' has weight 0 and receives no "
                              "traffic", ctx.at(*where), where)


def _routed_versions(service: Service) -> set[str]:
    """Versions a route sends requests (or copies of them) to, whatever their weight."""
    names = set()
    for route in service.routes or ():
        names |= {route.version} if route.version else set()
        names |= {v.name for v in route.versions or () if v.weight > 0}
        if route.mirror is not None and route.mirror.service in (None, service.name) and route.mirror.version:
            names.add(route.mirror.version)
    return names


def effective_lb(ctx: Context, service: Service) -> tuple[LoadBalancer | None, bool]:
    """The service's load balancer, and whether it was inherited from spec.defaults."""
    if service.load_balancer is not None:
        return service.load_balancer, False
    return ctx.mesh.spec.defaults.load_balancer, True


def _lb_span(ctx: Context, path: Path, inherited: bool) -> tuple[Span, Path, str]:
    if inherited:
        return ctx.at("spec", "defaults", "loadBalancer"), ("spec", "defaults", "loadBalancer"), " (from spec.defaults)"
    return ctx.at(*path, "loadBalancer"), path + ("loadBalancer",), ""


def weighted_needs_weights(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        lb, inherited = effective_lb(ctx, service)
        if lb is None or lb.policy is not LbPolicy.WEIGHTED:
            continue
        if any(e.weight is not None for e in service.endpoints or ()):
            continue
        span, where, origin = _lb_span(ctx, path, inherited)
        if inherited:
            span, where = ctx.at(*path, "name"), path + ("name",)
        yield error("E207", f"service '{service.name}' uses weighted load balancing{origin} but nothing carries a "
                    "weight", span, where,
                    hint="give its static endpoints a weight, or use round_robin / least_request; "
                    "version weights split traffic between versions with any policy")


def hash_lb_needs_key(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        lb, inherited = effective_lb(ctx, service)
        if lb is None:
            continue
        span, where, origin = _lb_span(ctx, path, inherited)
        has_key = lb.hash_on is not None and (lb.hash_on.header is not None or bool(lb.hash_on.source_ip)
                                              or lb.hash_on.cookie is not None or lb.hash_on.query_parameter is not None)
        if lb.policy in HASH_POLICIES and not has_key:
            yield error("E208", f"service '{service.name}' uses {lb.policy.value}{origin} without a hash key",
                        span, where, hint="add hashOn: {header: x-user-id} or hashOn: {sourceIp: true}")
        elif lb.policy not in HASH_POLICIES and lb.hash_on is not None and not inherited:
            yield warning("W202", f"hashOn has no effect with {lb.policy.value}; it needs ring_hash or maglev",
                          ctx.at(*where, "hashOn"), where + ("hashOn",))


def hash_key_complete(ctx: Context) -> Iterator[Diagnostic]:
    for path, lb in _explicit_lbs(ctx):
        hash_on = lb.hash_on
        keys = [hash_on.header, hash_on.source_ip or None, hash_on.cookie, hash_on.query_parameter] if hash_on else []
        if sum(key is not None for key in keys) > 1:
            yield error("E110", "hashOn takes one key: header, sourceIp, cookie or queryParameter", ctx.at(*path, "hashOn"),
                        path + ("hashOn",))


def _explicit_lbs(ctx: Context) -> Iterator[tuple[Path, LoadBalancer]]:
    if ctx.mesh.spec.defaults.load_balancer is not None:
        yield ("spec", "defaults", "loadBalancer"), ctx.mesh.spec.defaults.load_balancer
    for path, service in services(ctx):
        if service.load_balancer is not None:
            yield path + ("loadBalancer",), service.load_balancer


def endpoint_weights_ignored(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        lb, _ = effective_lb(ctx, service)
        policy = lb.policy if lb else LbPolicy.ROUND_ROBIN
        weighted = [i for i, e in enumerate(service.endpoints or ()) if e.weight is not None]
        if weighted and policy is LbPolicy.RANDOM:
            where = path + ("endpoints", weighted[0], "weight")
            yield warning("W203", f"endpoint weights of '{service.name}' are ignored by random load balancing; use "
                          "weighted", ctx.at(*where), where)


def static_endpoints_exclusive(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is None:
            continue
        for field, value in (("versions", service.versions), ("image", service.image), ("replicas", service.replicas)):
            if value is not None:
                yield error("E209", f"service '{service.name}' has static endpoints (it runs outside the mesh), so "
                            f"it cannot also have {field}", ctx.key(*path, field), path + (field,))


def duplicate_endpoints(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        endpoints = service.endpoints or ()
        for index in _repeats((endpoint.address, endpoint.port) for endpoint in endpoints):
            endpoint, where = endpoints[index], path + ("endpoints", index)
            yield error("E215", f"endpoint {endpoint.address}:{endpoint.port} of '{service.name}' is listed twice",
                        ctx.at(*where), where)


def endpoint_weight_sum(ctx: Context) -> Iterator[Diagnostic]:
    """All of a service's endpoints form one Envoy locality, and an endpoint without a weight counts 1."""
    for path, service in services(ctx):
        total = sum(endpoint.weight or 1 for endpoint in service.endpoints or ())
        if total > MAX_ENDPOINT_WEIGHT_SUM:
            where = path + ("endpoints",)
            yield error("E216", f"the endpoint weights of '{service.name}' sum to {total:,}, more than Envoy allows "
                        f"in one locality ({MAX_ENDPOINT_WEIGHT_SUM:,})", ctx.key(*where), where,
                        hint="weights are relative: divide them all by a common factor")


def external_without_upstreams(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is not None and service.upstreams:
            yield error("E217", f"service '{service.name}' has static endpoints and runs outside the mesh without a "
                        "sidecar, so it cannot declare upstreams", ctx.key(*path, "upstreams"), path + ("upstreams",))


def deployed_needs_image(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is not None or service.image is not None:
            continue
        if not service.versions:
            yield error("E210", f"service '{service.name}' is deployed but has no image (or static endpoints)",
                        ctx.at(*path, "name"), path + ("name",),
                        hint="set image on the service or on each version, or list static endpoints")
            continue
        for index, version in enumerate(service.versions):
            if version.image is None:
                where = path + ("versions", index)
                yield error("E210", f"version '{version.name}' of '{service.name}' has no image, and the service "
                            "sets none to inherit", ctx.at(*where), where)


def retry_on_known(ctx: Context) -> Iterator[Diagnostic]:
    places: list[tuple[Path, list[str | int] | None]] = []
    if ctx.mesh.spec.defaults.retries is not None:
        places.append((("spec", "defaults", "retries"), ctx.mesh.spec.defaults.retries.retry_on))
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            if upstream.retries is not None:
                places.append((path + ("upstreams", index, "retries"), upstream.retries.retry_on))
    for path, service in services(ctx):
        for index, route in enumerate(service.routes or ()):
            if route.retries is not None:
                places.append((path + ("routes", index, "retries"), route.retries.retry_on))
    for where, conditions in places:
        for index, condition in enumerate(conditions or ()):
            if isinstance(condition, int) or condition.isdigit():
                yield from _retry_status_code(ctx, int(condition), where + ("retryOn", index))
            elif condition not in RETRY_ON:
                item = where + ("retryOn", index)
                hint = _hint(condition, RETRY_ON)
                suffix = f"; did you mean '{hint}'?" if hint else ""
                yield error("E211", f"'{condition}' is not a retryOn condition Envoy knows{suffix}",
                            ctx.at(*item), item, hint or ", ".join(sorted(RETRY_ON)))


def _retry_status_code(ctx: Context, code: int, where: Path) -> Iterator[Diagnostic]:
    """An HTTP status in retryOn retries answers with that status (Envoy's retriable_status_codes)."""
    if not 100 <= code <= 599:
        yield error("E211", f"retryOn status code {code} is not an HTTP status (100-599)", ctx.at(*where), where)


def fail_fast_without_retries(ctx: Context) -> Iterator[Diagnostic]:
    default = ctx.mesh.spec.defaults.failure_policy
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            policy = upstream.failure_policy or default
            if policy is not FailurePolicy.FAIL_FAST or upstream.retries is None:
                continue
            where = path + ("upstreams", index, "retries")
            origin = "" if upstream.failure_policy else " (from spec.defaults)"
            yield error("E212", f"upstream '{upstream.service}' of '{service.name}' is fail_fast{origin} but sets "
                        "retries; fail_fast means no retries", ctx.key(*where), where,
                        hint="remove retries, or use failurePolicy: retry")


def backoff_order(ctx: Context) -> Iterator[Diagnostic]:
    """Envoy refuses a retry back-off whose max_interval is below its base_interval (a route's own
    retries included); meshc would otherwise have to pick one of the two."""
    for where, retries in _all_retries(ctx):
        backoff = retries.backoff
        if backoff is not None and backoff.max_interval is not None and backoff.max_interval < backoff.base_interval:
            item = where + ("backoff", "maxInterval")
            yield error("E221", "backoff maxInterval is shorter than baseInterval", ctx.at(*item), item)


def retry_settings_without_attempts(ctx: Context) -> Iterator[Diagnostic]:
    """retryOn, perTryTimeout or backoff where no retry happens (attempts: 0) are dropped: say so."""
    defaults = ctx.mesh.spec.defaults.retries
    default_attempts = defaults.attempts if defaults is not None and defaults.attempts is not None else \
        builtin.RETRY_ATTEMPTS
    blocks: list[tuple[Path, Retries, int]] = []
    retrying_upstream = False
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            retries = upstream.retries
            attempts = retries.attempts if retries is not None and retries.attempts is not None else default_attempts
            retrying_upstream |= attempts > 0 and retries is not None and retries.attempts is not None
            if retries is not None:
                blocks.append((path + ("upstreams", index, "retries"), retries, attempts))
    if defaults is not None and not retrying_upstream:
        blocks.insert(0, (("spec", "defaults", "retries"), defaults, default_attempts))
    for where, retries, attempts in blocks:
        unused = [name for name, value in (("retryOn", retries.retry_on), ("perTryTimeout", retries.per_try_timeout),
                                           ("backoff", retries.backoff)) if value is not None]
        if attempts == 0 and unused:
            origin = "" if retries.attempts is not None else " (attempts: 0 from spec.defaults)"
            yield warning("W209", f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect with "
                          f"attempts: 0{origin}: no request is retried", ctx.key(*where, unused[0]),
                          where + (unused[0],), hint="set attempts, or remove these settings")


def _allows_no_retry(circuit: CircuitBreaker) -> bool:
    """Envoy lets no retry through: max_retries 0, or a retry budget of 0% with no floor (a budget,
    when there is one, takes the place of max_retries)."""
    max_retries = builtin.CIRCUIT_MAX_RETRIES if circuit.max_retries is None else circuit.max_retries
    budget = circuit.retry_budget
    if budget is None:
        return max_retries == 0
    floor = max_retries if budget.min_concurrency is None else budget.min_concurrency
    return budget.percent == 0 and floor == 0


def _retrying_callers(ctx: Context, callees: Mapping[str, object]) -> dict[str, str]:
    """The first caller of each of these services whose requests to it may be retried."""
    defaults = ctx.mesh.spec.defaults
    default_attempts = defaults.retries.attempts if defaults.retries and defaults.retries.attempts is not None \
        else builtin.RETRY_ATTEMPTS
    callers: dict[str, str] = {}
    for _, service in services(ctx):
        for upstream in service.upstreams:
            if upstream.service not in callees or upstream.service in callers:
                continue
            own = upstream.retries.attempts if upstream.retries else None
            fail_fast = (upstream.failure_policy or defaults.failure_policy) is FailurePolicy.FAIL_FAST
            if not fail_fast and (own if own is not None else default_attempts) > 0:
                callers[upstream.service] = service.name
    return callers


def retries_blocked_by_circuit_breaker(ctx: Context) -> Iterator[Diagnostic]:
    """Retries the callee's circuit breaker never lets through: "unreachable retries" (DESIGN 6)."""
    default = ctx.mesh.spec.defaults.circuit_breaker
    default_blocks = default is not None and _allows_no_retry(default)
    blocked: dict[str, Path] = {}
    for path, service in services(ctx):
        circuit = service.circuit_breaker
        if (default_blocks if circuit is None else _allows_no_retry(circuit)) and service.protocol is not Protocol.TCP:
            blocked[service.name] = path
    if not blocked:
        return
    callers = _retrying_callers(ctx, blocked)
    for path, service in services(ctx):
        caller = callers.get(service.name)
        if caller is None or blocked.get(service.name) != path:
            continue
        where = path + ("circuitBreaker",) if service.circuit_breaker else ("spec", "defaults", "circuitBreaker")
        origin = "" if service.circuit_breaker else " (from spec.defaults)"
        yield warning("W211", f"the circuit breaker of '{service.name}'{origin} lets no retry through, so the "
                      f"retries of its callers ('{caller}') never happen", ctx.key(*where), where,
                      hint="raise maxRetries (or the retry budget), or set attempts: 0 on the callers")


def health_check_path(ctx: Context) -> Iterator[Diagnostic]:
    """HTTP services are checked with GET <path>; gRPC ones speak gRPC Health, tcp ones connect."""
    for path, service in services(ctx):
        check = service.health_check
        if check is not None and check.path is None and service.protocol in (Protocol.HTTP, Protocol.HTTP2):
            yield error("E102", f"missing required field 'path' in the healthCheck of '{service.name}': "
                        f"{service.protocol.value} services are checked with an HTTP GET of that path",
                        ctx.at(*path, "healthCheck"), path + ("healthCheck", "path"))


def health_check_path_unused(ctx: Context) -> Iterator[Diagnostic]:
    """A path asks for an HTTP check, but Envoy connects to a tcp service (tcp_health_check has no
    path) and calls gRPC Health on a grpc one, and so does the readiness probe: a silent downgrade."""
    for path, service in services(ctx):
        check = service.health_check
        if check is None or check.path is None:
            continue
        if service.protocol is Protocol.TCP:
            how = "a TCP connect"
        elif service.protocol is Protocol.GRPC and check.path != GRPC_HEALTH_PATH:
            how = f"the gRPC Health protocol ({GRPC_HEALTH_PATH})"
        else:
            continue
        where = path + ("healthCheck", "path")
        yield warning("W213", f"healthCheck.path of '{service.name}' has no effect: {service.protocol.value} "
                      f"services are checked with {how}, by Envoy and by the readiness probe alike",
                      ctx.key(*where), where, hint="remove path, or set the protocol the service speaks "
                      "(http, http2) to have it checked with an HTTP GET")


def health_check_timing(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        check = service.health_check
        if check is not None and check.timeout >= check.interval:
            where = path + ("healthCheck", "timeout")
            yield warning("W206", f"health check timeout of '{service.name}' is not shorter than its interval",
                          ctx.at(*where), where)


def tcp_route_policies(ctx: Context) -> Iterator[Diagnostic]:
    protocols = {s.name: s.protocol for s in ctx.mesh.spec.services}
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            if protocols.get(upstream.service) is not Protocol.TCP:
                continue
            for field in ("retries", "timeout"):
                if getattr(upstream, field) is not None:
                    where = path + ("upstreams", index, field)
                    yield warning("W207", f"'{upstream.service}' speaks tcp: {field} on this upstream does not apply",
                                  ctx.key(*where), where)


def tcp_hash_header(ctx: Context) -> Iterator[Diagnostic]:
    """tcp_proxy sees no headers: hashing a tcp service's connections on one keeps nobody anywhere."""
    for path, service in services(ctx):
        lb, inherited = effective_lb(ctx, service)
        if service.protocol is not Protocol.TCP or lb is None or lb.hash_on is None or lb.hash_on.header is None:
            continue
        if lb.policy not in HASH_POLICIES:
            continue   # W202 already says hashOn does nothing here
        span, where, origin = _lb_span(ctx, path, inherited)
        if not inherited:
            span, where = ctx.at(*where, "hashOn", "header"), where + ("hashOn", "header")
        yield warning("W207", f"'{service.name}' speaks tcp: hashOn header{origin} has no effect, since tcp_proxy "
                      "sees no headers; connections are spread as if at random", span, where,
                      hint="use hashOn: {sourceIp: true} to keep each caller on one host")


def etcd_prefix(ctx: Context) -> Iterator[Diagnostic]:
    prefix = ctx.mesh.spec.etcd.prefix
    if prefix is None:
        return
    where = ("spec", "etcd", "prefix")
    if not prefix.startswith("/"):
        yield error("E213", f"etcd prefix '{prefix}' must start with '/'", ctx.at(*where), where)
    elif prefix == "/":
        # every key of the cluster would lie under it: other tools' keys would look like meshc's
        yield error("E230", "etcd prefix '/' is the root of the whole keyspace: give the mesh a prefix of its own",
                    ctx.at(*where), where, hint="e.g. /meshc/<metadata.name>, the default")
    elif (prefix.endswith("/") or "//" in prefix):
        yield error("E213", f"etcd prefix '{prefix}' must not end with '/' or contain '//'", ctx.at(*where), where)


def kubernetes_names(ctx: Context) -> Iterator[Diagnostic]:
    """Service names become Kubernetes Service names (DNS-1035) and prefix Deployment names."""
    for path, service in services(ctx):
        if service.endpoints is not None:
            continue
        if not service.name[0].isalpha():
            yield error("E219", f"service name '{service.name}' must start with a letter: it becomes a Kubernetes "
                        "Service name", ctx.at(*path, "name"), path + ("name",))
        if not service.versions and len(service.name) + 1 + len(IMPLICIT_VERSION) > MAX_K8S_NAME:
            yield error("E219", f"service name '{service.name}' is too long: its generated objects need "
                        f"{MAX_K8S_NAME - len(IMPLICIT_VERSION) - 1} characters at most", ctx.at(*path, "name"),
                        path + ("name",))
        for index, version in enumerate(service.versions or ()):
            if len(service.name) + 1 + len(version.name) > MAX_K8S_NAME:
                where = path + ("versions", index, "name")
                yield error("E219", f"'{service.name}-{version.name}' is longer than {MAX_K8S_NAME} characters; "
                            "shorten the service or version name", ctx.at(*where), where)


def generated_names_unique(ctx: Context) -> Iterator[Diagnostic]:
    """Services and versions whose Kubernetes objects would share a name, or take an output file's."""
    owners: dict[tuple[str, str], Owner] = {}
    for path, service in services(ctx):
        if service.endpoints is not None:
            continue
        if service.name in RESERVED_SERVICE_NAMES:
            yield error("E222", f"service name '{service.name}' is reserved: kubernetes/{service.name}.yaml is "
                        "an output file of its own", ctx.at(*path, "name"), path + ("name",))
        for (kind, name), owner, where in _claimed_names(service, path):
            first = owners.setdefault((kind, name), owner)
            if first != owner:
                yield error("E222", f"{_owner_text(owner)} would create the {kind} '{name}', which "
                            f"{_owner_text(first)} already creates; rename one of them", ctx.at(*where), where)


# Who creates an object: a service (its implicit version), or a version of it. Named in words only
# for a diagnostic: a thousand-service spec claims 4,800 names.
Owner = tuple[str, "str | None"]


def _owner_text(owner: Owner) -> str:
    service, version = owner
    return f"service '{service}'" if version is None else f"version '{version}' of '{service}'"


def _claimed_names(service: Service, path: Path) -> Iterator[tuple[tuple[str, str], Owner, Path]]:
    """(kind, name), who creates it, and where that is written — for one deployed service."""
    yield ("Service", service.name), (service.name, None), path + ("name",)
    if not service.versions:
        owner: Owner = (service.name, None)
        where = path + ("name",)
        yield ("Deployment", object_names.workload(service.name, IMPLICIT_VERSION, True)), owner, where
        yield ("Service", object_names.headless_service(service.name, IMPLICIT_VERSION)), owner, where
        return
    for index, version in enumerate(service.versions):
        owner, where = (service.name, version.name), path + ("versions", index, "name")
        yield ("Deployment", object_names.workload(service.name, version.name, False)), owner, where
        yield ("Service", object_names.headless_service(service.name, version.name)), owner, where


def analysis_references(ctx: Context) -> Iterator[Diagnostic]:
    entry_points = list(enumerate(ctx.mesh.spec.analysis.entry_points or ()))
    yield from _unknown_entry_points(entry_points, {s.name for s in ctx.mesh.spec.services}, ctx.positions)


def _unknown_entry_points(entry_points: list[tuple[int, str]], names: set[str],
                          positions: Positions) -> Iterator[Diagnostic]:
    for index, name in entry_points:
        if name not in names:
            where = ("spec", "analysis", "entryPoints", index)
            yield error("E220", f"entry point '{name}' is not a service of this mesh", positions.value(where), where)


# --- zero trust ----------------------------------------------------------------------------

def certificate_renewal(ctx: Context) -> Iterator[Diagnostic]:
    certificates = ctx.mesh.spec.security.certificates
    if certificates.renew_before >= certificates.duration:
        where = ("spec", "security", "certificates", "renewBefore")
        yield error("E501", "certificates.renewBefore must be shorter than certificates.duration, or a certificate "
                    "would be renewed as soon as it is issued (cert-manager refuses it)", ctx.at(*where), where)


def external_zero_trust_fields(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is None:
            continue
        for field, value in (("mtls", service.mtls), ("extraCallers", service.extra_callers)):
            if value is not None:
                yield error("E502", f"service '{service.name}' has static endpoints and runs outside the mesh without "
                            f"a sidecar, so {field} has nothing to enforce it", ctx.key(*path, field), path + (field,),
                            hint="for TLS to an external service, use tls: {sni: ...}")


def tls_origination_on_external(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.tls is not None and service.endpoints is None:
            yield error("E503", f"service '{service.name}' is deployed in the mesh: its callers reach it over mTLS "
                        "already; tls (TLS origination) is for external services with static endpoints",
                        ctx.key(*path, "tls"), path + ("tls",))


def tls_origination_needs_a_name(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.tls is None or service.endpoints is None or service.tls.sni is not None:
            continue
        if is_ip_literal(service.endpoints[0].address):
            yield error("E504", f"service '{service.name}' is reached by IP address, so tls needs sni: the name its "
                        "certificate is issued for", ctx.key(*path, "tls"), path + ("tls",),
                        hint="tls: {sni: api.example.com}")


def extra_callers_outside_the_mesh(ctx: Context) -> Iterator[Diagnostic]:
    namespace = ctx.mesh.spec.namespace or ctx.mesh.metadata.name
    names = {s.name for s in ctx.mesh.spec.services}
    for path, service in services(ctx):
        for index, caller in enumerate(service.extra_callers or ()):
            if caller.namespace == namespace and caller.service_account in names:
                where = path + ("extraCallers", index)
                yield error("E505", f"'{caller.service_account}' is a service of this mesh: list '{service.name}' in "
                            f"its upstreams instead, so the call is part of the reviewed call graph",
                            ctx.at(*where), where)


def external_https_without_tls(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is None or service.tls is not None:
            continue
        if any(e.port == HTTPS_PORT for e in service.endpoints) and service.protocol is not Protocol.TCP:
            yield warning("W502", f"service '{service.name}' listens on port {HTTPS_PORT} but has no tls: callers' "
                          "sidecars would speak plaintext HTTP to it", ctx.at(*path, "name"), path + ("name",),
                          hint="add tls: {sni: <its host name>}, or set protocol: tcp if the app speaks TLS itself")


HTTPS_PORT = 443


# --- workloads (DESIGN 11) -------------------------------------------------------------------

def deployed(ctx: Context) -> Iterator[tuple[Path, Service]]:
    for path, service in services(ctx):
        if service.endpoints is None:
            yield path, service


def setting(ctx: Context, field: str) -> Iterator[tuple[Path, Service]]:
    """The services that set a workload field (most set none: this keeps the checks cheap)."""
    for index, service in enumerate(ctx.mesh.spec.services):
        if getattr(service, field) is not None:
            yield ("spec", "services", index), service


def calls_to_client_only(ctx: Context) -> Iterator[Diagnostic]:
    portless = {s.name for s in ctx.mesh.spec.services if s.port is None and s.endpoints is None}
    if not portless:
        return
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            if upstream.service in portless:
                where = path + ("upstreams", index, "service")
                yield error("E701", f"service '{service.name}' calls '{upstream.service}', which has no port: it only "
                            "calls out and takes no calls", ctx.at(*where), where,
                            hint=f"give '{upstream.service}' the port its application listens on")


def port_needed(ctx: Context) -> Iterator[Diagnostic]:
    """Settings that mean nothing without the app's port, or whose default is that port."""
    for index, service in enumerate(ctx.mesh.spec.services):
        if service.port is not None or service.endpoints is not None:
            continue
        path: Path = ("spec", "services", index)
        for field in ("servicePort", "healthCheck"):
            if ctx.positions.has(path + (field,)):
                yield error("E702", f"service '{service.name}' has no port, so it takes no calls and {field} has "
                            "nothing to apply to", ctx.key(*path, field), path + (field,))
        for name, probe in _probes(service):
            handler = probe.http_get or probe.tcp_socket or probe.grpc
            if handler is not None and handler.port is None:
                where = path + ("probes", name)
                yield error("E702", f"the {name} probe of '{service.name}' needs a port: the service has none to "
                            "default to", ctx.at(*where), where, hint="set the probe's port, or use exec")


def _probes(service: Service) -> Iterator[tuple[str, Probe]]:
    for name in ("liveness", "readiness", "startup"):
        probe = getattr(service.probes, name, None) if service.probes else None
        if isinstance(probe, Probe):
            yield name, probe


def _env_maps(service: Service, path: Path) -> Iterator[tuple[Path, Mapping[str, object]]]:
    yield path + ("env",), service.env or {}
    for index, version in enumerate(service.versions or ()):
        yield path + ("versions", index, "env"), version.env or {}
    for index, container in enumerate(service.init_containers or ()):
        yield path + ("initContainers", index, "env"), container.env or {}


def env_sources(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if not (service.env or service.versions or service.init_containers):
            continue
        for where, env in _env_maps(service, path):
            for name, value in env.items():
                if isinstance(value, EnvSource):
                    count = sum(x is not None for x in (value.secret_key_ref, value.config_map_key_ref,
                                                        value.field_ref))
                    if count != 1:
                        yield error("E703", f"env {name} of '{service.name}' names {count} sources; give exactly one "
                                    "of secretKeyRef, configMapKeyRef and fieldRef", ctx.at(*where, name),
                                    where + (name,))


def env_templates(ctx: Context) -> Iterator[Diagnostic]:
    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            for name, template in (upstream.env or {}).items():
                where = path + ("upstreams", index, "env", name)
                try:
                    fields = template_fields(template)
                except ValueError:
                    yield error("E704", f"env {name}: '{template}' is not a template: write a literal brace as "
                                "'{{' or '}}'", ctx.at(*where), where, hint=f"placeholders are {known}")
                    continue
                for field in fields:
                    if field not in PLACEHOLDERS:
                        close = _hint(field, PLACEHOLDERS)
                        suffix = f"; did you mean '{{{close}}}'?" if close else ""
                        yield error("E704", f"env {name}: unknown placeholder '{{{field}}}'{suffix}", ctx.at(*where),
                                    where, hint=f"placeholders are {known}")


def env_unique(ctx: Context) -> Iterator[Diagnostic]:
    """Upstream address variables are generated: a name two of them set, or one the service or a
    version also sets, is a mistake (the default `<SERVICE>_URL` may be overridden by `env`)."""
    for path, service in services(ctx):
        if not any(upstream.env for upstream in service.upstreams):
            continue
        generated: dict[str, str] = {}
        for index, upstream in enumerate(service.upstreams):
            for name in upstream.env or {}:
                where = path + ("upstreams", index, "env", name)
                if name in generated and generated[name] != upstream.service:
                    yield error("E705", f"env {name} of '{service.name}' is set for upstream '{generated[name]}' and "
                                f"for '{upstream.service}'", ctx.key(*where), where)
                generated.setdefault(name, upstream.service)
        for where, env in list(_env_maps(service, path))[:1 + len(service.versions or ())]:
            for name in env:
                if name in generated:
                    yield error("E705", f"env {name} of '{service.name}' is also the address of upstream "
                                f"'{generated[name]}' (its env sets it)", ctx.key(*where, name), where + (name,),
                                hint="rename one of them")


def volume_sources(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "volumes"):
        for index, volume in enumerate(service.volumes or ()):
            sources = [volume.empty_dir, volume.config_map, volume.secret, volume.persistent_volume_claim]
            count = sum(x is not None for x in sources)
            if count != 1:
                where = path + ("volumes", index)
                yield error("E706", f"volume '{volume.name}' of '{service.name}' has {count} sources; give exactly "
                            "one of emptyDir, configMap, secret and persistentVolumeClaim", ctx.at(*where), where)


def volumes_unique(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "volumes"):
        names: set[str] = set()
        paths: set[str] = set()
        for index, volume in enumerate(service.volumes or ()):
            where = path + ("volumes", index)
            if volume.name in RESERVED_VOLUMES:
                yield error("E707", f"volume name '{volume.name}' is one meshc gives its own volumes", 
                            ctx.at(*where, "name"), where + ("name",))
            elif volume.name in names:
                yield error("E707", f"service '{service.name}' has two volumes named '{volume.name}'",
                            ctx.at(*where, "name"), where + ("name",))
            mount = volume.mount_path.rstrip("/") or "/"
            if mount in paths:
                yield error("E707", f"service '{service.name}' mounts two volumes at {mount}",
                            ctx.at(*where, "mountPath"), where + ("mountPath",))
            names.add(volume.name)
            paths.add(mount)


# Pod Security `restricted` lets a container add this capability and no other.
_ALLOWED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def restricted_security(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "security_context"):
        context = service.security_context
        assert context is not None
        where = path + ("securityContext",)
        problems = [
            ("runAsUser", context.run_as_user == 0, "runs the app as root (user 0)"),
            ("runAsNonRoot", context.run_as_non_root is False, "allows the app to run as root"),
            ("privileged", bool(context.privileged), "makes the app privileged"),
            ("allowPrivilegeEscalation", bool(context.allow_privilege_escalation), "lets the app gain privileges"),
        ]
        for field, wrong, what in problems:
            if wrong:
                yield error("E708", f"the securityContext of '{service.name}' {what}; the restricted Pod Security "
                            "profile forbids it", ctx.at(*where, field), where + (field,),
                            hint="use an image that runs as a non-root user, with runAsUser set to that user")
        added = context.capabilities.add if context.capabilities else None
        for index, capability in enumerate(added or ()):
            if capability not in _ALLOWED_CAPABILITIES:
                item = where + ("capabilities", "add", index)
                yield error("E708", f"capability {capability} of '{service.name}' is not allowed by the restricted "
                            "Pod Security profile (only NET_BIND_SERVICE may be added)", ctx.at(*item), item)


def init_container_names(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "init_containers"):
        seen: set[str] = set()
        for index, container in enumerate(service.init_containers or ()):
            where = path + ("initContainers", index, "name")
            if container.name in RESERVED_CONTAINERS:
                yield error("E709", f"init container name '{container.name}' is one meshc gives its own containers",
                            ctx.at(*where), where)
            elif container.name in seen:
                yield error("E709", f"service '{service.name}' has two init containers named '{container.name}'",
                            ctx.at(*where), where)
            seen.add(container.name)


def probe_handlers(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "probes"):
        for name, probe in _probes(service):
            count = sum(x is not None for x in (probe.http_get, probe.tcp_socket, probe.grpc, probe.exec))
            if count > 1:
                where = path + ("probes", name)
                yield error("E710", f"the {name} probe of '{service.name}' has {count} handlers; give one of "
                            "httpGet, tcpSocket, grpc and exec", ctx.at(*where), where)
            elif count == 0 and service.port is None:
                where = path + ("probes", name)
                yield error("E710", f"the {name} probe of '{service.name}' has no handler, and the service no port "
                            "for a tcpSocket one", ctx.at(*where), where)


def requests_within_limits(ctx: Context) -> Iterator[Diagnostic]:
    """After inheritance and defaults, as the resolver combines them, field by field."""
    proxy = ctx.mesh.spec.proxy
    yield from _over_limit(ctx, ("spec", "proxy", "resources"), [(proxy.resources, ("spec", "proxy", "resources"))],
                           PROXY_RESOURCES, "the sidecar")
    for path, service in deployed(ctx):
        own = (service.resources, path + ("resources",))
        if service.resources is None and not any(v.resources for v in service.versions or ()) \
                and not service.init_containers:
            continue    # the built-in defaults alone (test_defaults_fit_their_limits)
        if not service.versions:
            yield from _over_limit(ctx, path, [own], APP_RESOURCES, f"'{service.name}'")
        for index, version in enumerate(service.versions or ()):
            where = path + ("versions", index)
            yield from _over_limit(ctx, where, [(version.resources, where + ("resources",)), own], APP_RESOURCES,
                                   f"version '{version.name}' of '{service.name}'")
        for index, container in enumerate(service.init_containers or ()):
            where = path + ("initContainers", index)
            yield from _over_limit(ctx, where, [(container.resources, where + ("resources",))], APP_RESOURCES,
                                   f"init container '{container.name}' of '{service.name}'")


# (model field, spec name, built-in defaults' key): ephemeral storage has no default
_LIMITED = (("cpu", "cpu", "cpu"), ("memory", "memory", "memory"), ("ephemeral_storage", "ephemeral-storage", None))


def _over_limit(ctx: Context, owner: Path, layers: list[tuple[Resources | None, Path]], base: dict[str, str],
                who: str) -> Iterator[Diagnostic]:
    for field, resource, default in _LIMITED:
        request, request_at = _pick(layers, "requests", field, resource, base.get(f"{default}_request"), owner)
        limit, limit_at = _pick(layers, "limits", field, resource, base.get(f"{default}_limit"), owner)
        if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
            where = request_at if request_at != owner else limit_at
            yield error("E711", f"{who} requests {resource} {request}{_default_mark(request_at, owner)}, more than "
                        f"its limit {limit}{_default_mark(limit_at, owner)}: Kubernetes rejects such a pod",
                        ctx.at(*where), where, hint=f"raise limits.{resource}, or lower requests.{resource}")


def _default_mark(where: Path, owner: Path) -> str:
    """A value found at the owner itself came from the built-in defaults."""
    return " (default)" if where == owner else ""


def _pick(layers: list[tuple[Resources | None, Path]], section: str, field: str, resource: str,
          default: str | None, owner: Path) -> tuple[str | None, Path]:
    for resources, where in layers:
        values = getattr(resources, section, None) if resources else None
        value = getattr(values, field, None) if values else None
        if value is not None:
            return str(value), where + (section, resource)
    return default, owner


def autoscaling_range(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "autoscaling"):
        scaling = service.autoscaling
        assert scaling is not None
        where = path + ("autoscaling",)
        if scaling.min_replicas > scaling.max_replicas:
            yield error("E712", f"autoscaling of '{service.name}': minReplicas {scaling.min_replicas} is greater "
                        f"than maxReplicas {scaling.max_replicas}", ctx.at(*where, "minReplicas"),
                        where + ("minReplicas",))
        places = [path + ("replicas",)] + [path + ("versions", i, "replicas") for i, v in
                                           enumerate(service.versions or ()) if v.replicas is not None]
        for place in places:
            if ctx.positions.has(place):
                yield warning("W701", f"replicas of '{service.name}' are ignored: its autoscaler sets them "
                              f"(between {scaling.min_replicas} and {scaling.max_replicas})", ctx.key(*place), place)


def disruption_budget_choice(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "disruption_budget"):
        budget = service.disruption_budget
        if isinstance(budget, DisruptionBudget) and (budget.min_available is None) == (budget.max_unavailable is None):
            where = path + ("disruptionBudget",)
            yield error("E713", f"the disruptionBudget of '{service.name}' needs exactly one of minAvailable and "
                        "maxUnavailable", ctx.at(*where), where)


def pod_keys(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "pod"):
        for field in ("labels", "annotations"):
            for key in getattr(service.pod, field, None) or {}:
                if reserved_pod_key(key):
                    where = path + ("pod", field, key)
                    yield error("E714", f"pod {field[:-1]} '{key}' of '{service.name}' is one meshc sets itself",
                                ctx.key(*where), where)


def _toleration_problems(toleration: Toleration) -> Iterator[tuple[str, str]]:
    """Kubernetes' validateTolerations, field by field: (the field at fault, why)."""
    if not toleration.key and toleration.operator != "Exists":
        yield "operator", "without a key, operator must be Exists (which matches every taint)"
    if toleration.operator == "Exists" and toleration.value:
        yield "value", "with operator Exists, value must be empty"
    if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
        yield "tolerationSeconds", "tolerationSeconds needs effect NoExecute"


def pod_scheduling(ctx: Context) -> Iterator[Diagnostic]:
    """Rules the API server applies to tolerations and spread constraints, which a schema does not
    express: a pod template breaking one is refused, and the whole apply fails at that Deployment."""
    for path, service in setting(ctx, "pod"):
        assert service.pod is not None
        for index, toleration in enumerate(service.pod.tolerations or ()):
            for field, reason in _toleration_problems(toleration):
                where = path + ("pod", "tolerations", index)
                span = ctx.key(*where, field) if ctx.positions.has(where + (field,)) else ctx.at(*where)
                yield error("E716", f"toleration {index + 1} of '{service.name}': {reason}; Kubernetes refuses it",
                            span, where + (field,))
        for index, spread in enumerate(service.pod.topology_spread_constraints or ()):
            if spread.min_domains is not None and spread.when_unsatisfiable != "DoNotSchedule":
                where = path + ("pod", "topologySpreadConstraints", index, "minDomains")
                yield error("E716", f"topology spread constraint {index + 1} of '{service.name}': minDomains needs "
                            "whenUnsatisfiable: DoNotSchedule; Kubernetes refuses it", ctx.key(*where), where)


# Kubernetes' ValidateAffinity: which operator of a selector requirement takes values, and how many.
_VALUES_RULES = {
    "In": (1, None, "must be given when operator is In"),
    "NotIn": (1, None, "must be given when operator is NotIn"),
    "Exists": (0, 0, "must be empty when operator is Exists"),
    "DoesNotExist": (0, 0, "must be empty when operator is DoesNotExist"),
    "Gt": (1, 1, "must be exactly one value (an integer) when operator is Gt"),
    "Lt": (1, 1, "must be exactly one value (an integer) when operator is Lt"),
}


def _requirement_problems(requirement: NodeSelectorRequirement | LabelSelectorRequirement,
                          where: Path) -> Iterator[tuple[Path, str]]:
    least, most, reason = _VALUES_RULES[requirement.operator]
    count = len(requirement.values or ())
    if count < least or (most is not None and count > most):
        yield where + ("values",), reason


def _expressions_problems(selector: NodeSelectorTerm | LabelSelector | None,
                          where: Path) -> Iterator[tuple[Path, str]]:
    """The problems of a node selector term's or a label selector's matchExpressions."""
    requirements: Sequence[NodeSelectorRequirement | LabelSelectorRequirement] = \
        selector.match_expressions or () if selector else ()
    for index, requirement in enumerate(requirements):
        yield from _requirement_problems(requirement, where + ("matchExpressions", index))


def _pod_term_problems(term: PodAffinityTerm, where: Path) -> Iterator[tuple[Path, str]]:
    yield from _expressions_problems(term.label_selector, where + ("labelSelector",))
    yield from _expressions_problems(term.namespace_selector, where + ("namespaceSelector",))
    for field, keys in (("matchLabelKeys", term.match_label_keys), ("mismatchLabelKeys", term.mismatch_label_keys)):
        if keys and term.label_selector is None:
            yield where + (field,), "needs a labelSelector beside it"
    both = set(term.match_label_keys or ()) & set(term.mismatch_label_keys or ())
    selected = _selector_keys(term.label_selector)
    for index, key in enumerate(term.match_label_keys or ()):
        if key in both:
            yield where + ("matchLabelKeys", index), f"'{key}' is in mismatchLabelKeys too"
        elif key in selected:
            # The API server adds `key In (the pod's value)` to the labelSelector of each pod it
            # creates, then refuses the key found twice: the Deployment is taken, its pods are not.
            yield where + ("matchLabelKeys", index), f"'{key}' is in the labelSelector too, where each pod gets `{key} In (its value)` added"


def _selector_keys(selector: LabelSelector | None) -> set[str]:
    """The label keys a label selector names, in matchLabels or matchExpressions."""
    if selector is None:
        return set()
    return set(selector.match_labels or ()) | {requirement.key for requirement in selector.match_expressions or ()}


def _affinity_problems(affinity: Affinity, where: Path) -> Iterator[tuple[Path, str]]:
    """Every (path, why) the API server refuses in an Affinity that has the right shape."""
    ignored = "IgnoredDuringExecution"
    nodes = affinity.node_affinity
    required = nodes.required_during_scheduling_ignored_during_execution if nodes else None
    at = where + ("nodeAffinity", f"requiredDuringScheduling{ignored}", "nodeSelectorTerms")
    for index, term in enumerate(required.node_selector_terms if required else ()):
        yield from _expressions_problems(term, at + (index,))
    at = where + ("nodeAffinity", f"preferredDuringScheduling{ignored}")
    for index, preferred in enumerate(nodes.preferred_during_scheduling_ignored_during_execution or ()
                                      if nodes else ()):
        yield from _expressions_problems(preferred.preference, at + (index, "preference"))
    for field, pods in (("podAffinity", affinity.pod_affinity), ("podAntiAffinity", affinity.pod_anti_affinity)):
        if pods is None:
            continue
        for index, pod_term in enumerate(pods.required_during_scheduling_ignored_during_execution or ()):
            yield from _pod_term_problems(pod_term, where + (field, f"requiredDuringScheduling{ignored}", index))
        for index, weighted in enumerate(pods.preferred_during_scheduling_ignored_during_execution or ()):
            yield from _pod_term_problems(weighted.pod_affinity_term, where + (
                field, f"preferredDuringScheduling{ignored}", index, "podAffinityTerm"))


def pod_affinity(ctx: Context) -> Iterator[Diagnostic]:
    """Rules the API server applies to an affinity between its fields (the shapes and names are the
    models'): a pod template breaking one is refused, and the whole apply fails at that Deployment."""
    for path, service in setting(ctx, "pod"):
        assert service.pod is not None
        if service.pod.affinity is None:
            continue
        for where, reason in _affinity_problems(service.pod.affinity, path + ("pod", "affinity")):
            span = ctx.key(*where) if ctx.positions.has(where) else ctx.at(*where[:-1])
            yield error("E717", f"pod affinity of '{service.name}', {dotted(where[len(path) + 2:])}: {reason}; "
                        "Kubernetes refuses it", span, where)


_WORKLOAD_FIELDS = ("command", "args", "env", "volumes", "securityContext", "initContainers", "probes",
                    "autoscaling", "disruptionBudget", "pod", "servicePort")


def external_without_workload(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "endpoints"):
        for field in _WORKLOAD_FIELDS:
            if ctx.positions.has(path + (field,)):
                yield error("E715", f"service '{service.name}' has static endpoints (it runs outside the mesh), so "
                            f"it has no pods for {field}", ctx.key(*path, field), path + (field,))
# --- request routing and gateways (E6xx / W6xx) -------------------------------------------

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")   # RFC 7230 token: what a header name may be


def routes_of(ctx: Context) -> tuple[tuple[Path, Service, int, Route], ...]:
    return ctx.routes


def _route_label(service: Service, index: int, route: Route) -> str:
    return f"route '{route.name}' of '{service.name}'" if route.name else f"route {index + 1} of '{service.name}'"


def _version_names(service: Service) -> list[str]:
    return [v.name for v in service.versions or ()]


def _unknown_version(ctx: Context, service: Service, name: str, where: Path, what: str) -> Iterator[Diagnostic]:
    known = _version_names(service)
    if name in known:
        return
    if not known:
        yield error("E601", f"{what} names version '{name}', but '{service.name}' declares no versions",
                    ctx.at(*where), where, hint=f"add versions to '{service.name}', or drop the version")
        return
    hint = _hint(name, known)
    suffix = f"; did you mean '{hint}'?" if hint else f" (it has {', '.join(known)})"
    yield error("E601", f"{what} names version '{name}', which '{service.name}' does not have{suffix}",
                ctx.at(*where), where, hint)


def route_versions(ctx: Context) -> Iterator[Diagnostic]:
    for path, service, index, route in routes_of(ctx):
        label = _route_label(service, index, route)
        if route.version is not None:
            yield from _unknown_version(ctx, service, route.version, path + ("version",), label)
        for i, weighted in enumerate(route.versions or ()):
            yield from _unknown_version(ctx, service, weighted.name, path + ("versions", i, "name"), label)


def route_versions_unique(ctx: Context) -> Iterator[Diagnostic]:
    """A split that names a version twice (Consul: "split destination occurs more than once")."""
    for path, service, index, route in routes_of(ctx):
        split = route.versions or ()
        for i in _repeats(weighted.name for weighted in split):
            where = path + ("versions", i, "name")
            yield error("E203", f"{_route_label(service, index, route)} names version '{split[i].name}' twice in "
                        "its split", ctx.at(*where), where, hint="give the version one entry with the sum of weights")


def _header_sides(route: Route, path: Path) -> Iterator[tuple[str, HeaderChanges, Path]]:
    """("request" or "response", the changes a route makes to that side's headers, where they are
    written) for each side it changes."""
    for side in ("request", "response"):
        changes = getattr(route.headers, side, None) if route.headers else None
        if changes is not None:
            yield side, changes, path + ("headers", side)


def _route_lists(route: Route, path: Path) -> Iterator[tuple[str, Path, Sequence[str], bool]]:
    """(what, where, names as written, whether they are a mapping's keys) of a route's lists of
    names; header names are compared without case, as HTTP compares them."""
    if route.match is not None:
        yield "methods", path + ("match", "methods"), route.match.methods or (), False
        yield "callers", path + ("match", "callers"), route.match.callers or (), False
        yield "header matches", path + ("match", "headers"), list(route.match.headers or {}), True
    for side, changes, where in _header_sides(route, path):
        yield f"headers to set on the {side}", where + ("set",), list(changes.set or {}), True
        yield f"headers to remove from the {side}", where + ("remove",), changes.remove or (), False


def duplicate_list_entries(ctx: Context) -> Iterator[Diagnostic]:
    """A method, caller or header named twice in one list means nothing more than once (Consul's
    service-router refuses "Methods contains X more than once", the Gateway API headers named twice
    in a match or a header modifier); it is most often a slip for another."""
    for path, service, index, route in routes_of(ctx):
        for what, where, names, keys in _route_lists(route, path):
            for i in _repeats(name.lower() if "header" in what else name for name in names):
                name = names[i]
                item = where + ((name,) if keys else (i,))
                yield error("E618", f"{_route_label(service, index, route)} lists '{name}' twice in its {what}",
                            ctx.key(*item) if keys else ctx.at(*item), item)


def duplicate_extra_callers(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in setting(ctx, "extra_callers"):
        callers = service.extra_callers or ()
        for index in _repeats((caller.namespace, caller.service_account) for caller in callers):
            caller, where = callers[index], path + ("extraCallers", index)
            yield error("E618", f"'{service.name}' lists extra caller {caller.namespace}/{caller.service_account} "
                        "twice", ctx.at(*where), where)


def rewrite_needs_a_prefix(ctx: Context) -> Iterator[Diagnostic]:
    """rewrite.prefix replaces the matched path prefix; a regex match has none, so Envoy (and Istio)
    replace the whole path, as with an exact match. Consul's service-router refuses PrefixRewrite
    without PathPrefix or PathExact; meshc warns, since the result is well defined."""
    places = [(path, route.match.path if route.match else None, route.rewrite) for path, _, _, route in routes_of(ctx)]
    places += [(gpath + ("routes", i), groute.match.path, groute.rewrite) for gpath, gateway in _gateways(ctx)
               for i, groute in enumerate(gateway.routes)]
    for where, path_match, rewrite in places:
        if rewrite is not None and path_match is not None and path_match.regex is not None:
            yield warning("W603", "rewrite.prefix with a regex path match replaces the whole path: a regex match has "
                          "no prefix to keep", ctx.key(*where, "rewrite"), where + ("rewrite",),
                          hint="match a path prefix to rewrite only the prefix")


def route_weights(ctx: Context) -> Iterator[Diagnostic]:
    for path, service, index, route in routes_of(ctx):
        if route.versions is None:
            continue
        total = sum(v.weight for v in route.versions)
        if total != 100:
            yield error("E602", f"version weights of {_route_label(service, index, route)} sum to {total}, not 100",
                        ctx.key(*path, "versions"), path + ("versions",), hint="weights are percentages of requests")


def _exactly_one(ctx: Context, where: Path, model: Model, fields: tuple[str, ...], what: str) -> Iterator[Diagnostic]:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        names = [_alias(model, f) for f in fields]
        found = f"got {', '.join(_alias(model, f) for f in given)}" if given else "got none"
        yield error("E603", f"{what} takes exactly one of {', '.join(names)} ({found})", ctx.at(*where), where)


def _alias(model: Model, field: str) -> str:
    """A field's name in the spec."""
    return spec_names(type(model))[field]


_STRING_MATCH = ("exact", "prefix", "suffix", "regex", "present", "absent")
_PATH_MATCH = ("prefix", "exact", "regex")


def _match_shapes(ctx: Context, where: Path, match: RouteMatch | GatewayRouteMatch) -> Iterator[Diagnostic]:
    if match.path is not None:
        yield from _exactly_one(ctx, where + ("path",), match.path, _PATH_MATCH, "a path match")
    if isinstance(match, RouteMatch):
        for section in ("headers", "query"):
            for name, condition in (getattr(match, section) or {}).items():
                yield from _exactly_one(ctx, where + (section, name), condition, _STRING_MATCH,
                                        f"the match on {section} '{name}'")
                if section == "query" and condition.absent:
                    item = where + (section, name, "absent")
                    yield error("E603", f"a query parameter match cannot test absence ('{name}'): Envoy matches "
                                "present parameters only", ctx.key(*item), item)


def route_shapes(ctx: Context) -> Iterator[Diagnostic]:
    for path, service, index, route in routes_of(ctx):
        label = _route_label(service, index, route)
        if route.version is not None and route.versions is not None:
            yield error("E603", f"{label} sets both version and versions; give one", ctx.key(*path, "versions"),
                        path + ("versions",))
        if route.match is not None:
            yield from _match_shapes(ctx, path + ("match",), route.match)
        if route.mirror is not None and route.mirror.version is None and route.mirror.service is None:
            yield error("E603", f"the mirror of {label} needs a version or a service to copy requests to",
                        ctx.at(*path, "mirror"), path + ("mirror",))
        fault = route.fault
        if fault is not None and fault.delay is None and fault.abort is None:
            yield error("E603", f"the fault of {label} needs a delay or an abort", ctx.at(*path, "fault"),
                        path + ("fault",))
        if fault is not None and fault.abort is not None:
            yield from _exactly_one(ctx, path + ("fault", "abort"), fault.abort, ("status", "grpc_status"),
                                    f"the abort of {label}")
    for gpath, gateway in _gateways(ctx):
        for index, groute in enumerate(gateway.routes):
            yield from _match_shapes(ctx, gpath + ("routes", index, "match"), groute.match)


def route_callers(ctx: Context) -> Iterator[Diagnostic]:
    if not any(r.match is not None and r.match.callers for _, _, _, r in routes_of(ctx)):
        return
    callers_of: dict[str, set[str]] = {}
    for _, calling in services(ctx):
        for upstream in calling.upstreams:
            callers_of.setdefault(upstream.service, set()).add(calling.name)
    for path, service, index, route in routes_of(ctx):
        actual = callers_of.get(service.name, set())
        for i, caller in enumerate(route.match.callers or () if route.match else ()):
            if caller in actual:
                continue
            where = path + ("match", "callers", i)
            hint = _hint(caller, actual)
            suffix = f"; did you mean '{hint}'?" if hint else ""
            yield error("E604", f"{_route_label(service, index, route)} is scoped to caller '{caller}', which does "
                        f"not call '{service.name}'{suffix}", ctx.at(*where), where, hint)


def tcp_routes(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.protocol is Protocol.TCP and service.routes:
            faulty = next((i for i, r in enumerate(service.routes) if r.fault is not None), None)
            where = path + (("routes", faulty, "fault") if faulty is not None else ("routes",))
            what = "a fault needs" if faulty is not None else "routes need"
            yield error("E605", f"'{service.name}' speaks tcp: {what} HTTP requests to act on",
                        ctx.key(*where), where, hint="routes, faults and mirrors work on http, http2 and grpc")


def _header_names(service: Service, path: Path) -> Iterator[tuple[str, Path, bool]]:
    """(name, where, a key in a mapping) of every header name a service's spec writes."""
    for index, route in enumerate(service.routes or ()):
        rpath = path + ("routes", index)
        for name in (route.match.headers or {}) if route.match else {}:
            yield name, rpath + ("match", "headers", name), True
        for side in ("request", "response"):
            changes = getattr(route.headers, side, None) if route.headers else None
            for name in (changes.set or {}) if changes else {}:
                yield name, rpath + ("headers", side, "set", name), True
            for i, name in enumerate((changes.remove or []) if changes else []):
                yield name, rpath + ("headers", side, "remove", i), False
        for i, name in enumerate(route.retries.retriable_headers or [] if route.retries else []):
            yield name, rpath + ("retries", "retriableHeaders", i), False
    for index, upstream in enumerate(service.upstreams):
        for i, name in enumerate(upstream.retries.retriable_headers or [] if upstream.retries else []):
            yield name, path + ("upstreams", index, "retries", "retriableHeaders", i), False
    cookie = service.load_balancer.hash_on.cookie if service.load_balancer and service.load_balancer.hash_on else None
    if cookie is not None:
        yield cookie.name, path + ("loadBalancer", "hashOn", "cookie", "name"), False


def _default_header_names(ctx: Context) -> Iterator[tuple[str, Path, bool]]:
    """The header names spec.defaults writes (every service may inherit them)."""
    defaults: Path = ("spec", "defaults")
    retries = ctx.mesh.spec.defaults.retries
    for i, name in enumerate(retries.retriable_headers or [] if retries else []):
        yield name, defaults + ("retries", "retriableHeaders", i), False
    lb = ctx.mesh.spec.defaults.load_balancer
    if lb is not None and lb.hash_on is not None and lb.hash_on.cookie is not None:
        yield lb.hash_on.cookie.name, defaults + ("loadBalancer", "hashOn", "cookie", "name"), False


# A request's pseudo-headers, which Envoy's header matchers (and Istio's header matches) accept by
# name: a route may match on them, though no route may set or remove one.
_MATCHABLE_PSEUDO_HEADERS = frozenset({":authority", ":method", ":path", ":scheme"})


def header_names(ctx: Context) -> Iterator[Diagnostic]:
    """Names go into Envoy's configuration and onto the wire as they are: only RFC 7230 tokens."""
    named = (named for path, service in services(ctx) for named in _header_names(service, path))
    for name, where, is_key in itertools.chain(_default_header_names(ctx), named):
        if not _TOKEN.match(name):
            if name.lower() in _MATCHABLE_PSEUDO_HEADERS and where[-3:-1] == ("match", "headers"):
                continue
            yield error("E606", f"{name!r} is not a valid header name: letters, digits and "
                        "!#$%&'*+-.^_`|~ only (an RFC 7230 token)", ctx.key(*where) if is_key else ctx.at(*where),
                        where)


def _header_changes(route: Route, path: Path) -> Iterator[tuple[str, Path, bool, str]]:
    """(name, where, a key in a mapping, set or remove) of every header a route changes."""
    for _, changes, where in _header_sides(route, path):
        for name in changes.set or {}:
            yield name, where + ("set", name), True, "set"
        for i, name in enumerate(changes.remove or []):
            yield name, where + ("remove", i), False, "remove"


def unmodifiable_headers(ctx: Context) -> Iterator[Diagnostic]:
    """Envoy refuses a route that sets or removes Host (and the ':' pseudo-headers, which E606 already
    refuses as names): ":-prefixed or host headers may not be modified/removed"."""
    for path, service, _, route in routes_of(ctx):
        for name, where, is_key, action in _header_changes(route, path):
            if name.lower() == "host":
                yield error("E617", f"a route of '{service.name}' cannot {action} the {name} header: Envoy refuses "
                            "to let a route change it", ctx.key(*where) if is_key else ctx.at(*where), where,
                            hint="the Host of a request to a mesh service is the caller's; drop this change")


def header_value_formats(ctx: Context) -> Iterator[Diagnostic]:
    """Envoy refuses a header value whose '%' opens no command it knows (Istio refuses the same
    grammar: "header value configuration abc%123 is invalid")."""
    for path, service, index, route in routes_of(ctx):
        for _, changes, side_at in _header_sides(route, path):
            for name, value in (changes.set or {}).items():
                problem = format_problem(value) if "%" in value else None
                if problem is None:
                    continue
                where = side_at + ("set", name)
                position, why = problem
                yield error("E620", f"header {name} of {_route_label(service, index, route)}: the '%' at position "
                            f"{position + 1} of {value!r} {why}; Envoy reads %...% in a header value as a command",
                            ctx.at(*where), where, hint="write %% for a literal %")


def mirror_targets(ctx: Context) -> Iterator[Diagnostic]:
    by_name: dict[str, Service] | None = None
    for path, service, index, route in routes_of(ctx):
        mirror = route.mirror
        if mirror is None or (mirror.service is None and mirror.version is None):
            continue
        by_name = by_name if by_name is not None else {s.name: s for s in ctx.mesh.spec.services}
        names = list(by_name)
        label = f"the mirror of {_route_label(service, index, route)}"
        target = by_name.get(mirror.service or service.name)
        if target is None:
            where = path + ("mirror", "service")
            hint = _hint(str(mirror.service), names)
            suffix = f"; did you mean '{hint}'?" if hint else ""
            yield error("E608", f"{label} copies requests to '{mirror.service}', which is not a service of this "
                        f"mesh{suffix}", ctx.at(*where), where, hint)
        elif target.protocol is Protocol.TCP:
            where = path + ("mirror", "service")
            yield error("E608", f"{label} copies requests to '{target.name}', which speaks tcp", ctx.at(*where), where)
        elif mirror.version is not None and target.endpoints is None:
            known = _version_names(target)
            if mirror.version not in known:
                where = path + ("mirror", "version")
                hint = _hint(mirror.version, known)
                suffix = f"; did you mean '{hint}'?" if hint else ""
                yield error("E608", f"{label} names version '{mirror.version}', which '{target.name}' does not "
                            f"have{suffix}", ctx.at(*where), where, hint)
        elif mirror.version is None and len(target.versions or ()) > 1:
            where = path + ("mirror",)
            yield error("E608", f"{label} copies requests to '{target.name}', which has several versions: name one",
                        ctx.at(*where), where, hint=f"versions: {', '.join(_version_names(target))}")


def mirror_to_itself(ctx: Context) -> Iterator[Diagnostic]:
    for path, service, index, route in routes_of(ctx):
        mirror = route.mirror
        if mirror is None or (mirror.service not in (None, service.name)):
            continue
        primary = {route.version} if route.version else {v.name for v in route.versions or () if v.weight > 0}
        if route.version is None and route.versions is None:
            weights = [v for v in service.versions or () if v.weight != 0]
            primary = {v.name for v in weights} if service.versions else {IMPLICIT_VERSION}
        mirrored = mirror.version or (IMPLICIT_VERSION if not service.versions else None)
        if mirrored is not None and primary == {mirrored}:
            yield error("E607", f"{_route_label(service, index, route)} mirrors its requests to "
                        f"'{service.name}' {'' if mirrored == IMPLICIT_VERSION else mirrored + ' '}"
                        "where they already go: every request would arrive twice", ctx.at(*path, "mirror"),
                        path + ("mirror",), hint="mirror to another version or service")


def abort_status(ctx: Context) -> Iterator[Diagnostic]:
    for path, service, _index, route in routes_of(ctx):
        abort = route.fault.abort if route.fault else None
        if abort is not None and abort.grpc_status is not None and service.protocol is not Protocol.GRPC:
            where = path + ("fault", "abort", "grpcStatus")
            yield error("E609", f"'{service.name}' speaks {service.protocol.value}, not grpc: abort with an HTTP "
                        "status instead", ctx.key(*where), where, hint="abort: {status: 503, percent: 10}")


def _regexes(ctx: Context) -> Iterator[tuple[str, Path]]:
    for path, _, _, route in routes_of(ctx):
        match = route.match
        if match is None:
            continue
        if match.path is not None and match.path.regex is not None:
            yield match.path.regex, path + ("match", "path", "regex")
        for section in ("headers", "query"):
            for name, condition in (getattr(match, section) or {}).items():
                if condition.regex is not None:
                    yield condition.regex, path + ("match", section, name, "regex")
    for gpath, gateway in _gateways(ctx):
        for index, groute in enumerate(gateway.routes):
            if groute.match.path is not None and groute.match.path.regex is not None:
                yield groute.match.path.regex, gpath + ("routes", index, "match", "path", "regex")


def regexes(ctx: Context) -> Iterator[Diagnostic]:
    """Envoy compiles every regex with RE2 (no look-around, no back-references): so does this check."""
    found = list(_regexes(ctx))
    if not found:
        return
    import re2   # the engine Envoy uses; loaded only for specs that have a regex

    options = re2.Options()
    options.log_errors = False      # the diagnostic says it; RE2 would also print to stderr
    for pattern, where in found:
        try:
            size = re2.compile(pattern, options).programsize
        except re2.error as exc:
            yield error("E610", f"regex {pattern!r} is not valid RE2 (Envoy's regex engine): {_re2_reason(exc)}",
                        ctx.at(*where), where)
            continue
        if size > RE2_MAX_PROGRAM_SIZE:
            yield error("E610", f"regex {pattern!r} compiles to an RE2 program of size {size}, more than the "
                        f"{RE2_MAX_PROGRAM_SIZE} Envoy accepts", ctx.at(*where), where,
                        hint="make it simpler: fewer alternatives, no large counted repetitions such as {36}; "
                        "or match a prefix")


# Envoy refuses a regex whose compiled RE2 program is larger than this (its runtime key
# re2.max_program_size.error_level, which meshc's bootstraps leave at its default).
RE2_MAX_PROGRAM_SIZE = 100


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode() if isinstance(reason, bytes) else str(reason)


def _all_retries(ctx: Context) -> Iterator[tuple[Path, Retries]]:
    if ctx.mesh.spec.defaults.retries is not None:
        yield ("spec", "defaults", "retries"), ctx.mesh.spec.defaults.retries
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            if upstream.retries is not None:
                yield path + ("upstreams", index, "retries"), upstream.retries
        for index, route in enumerate(service.routes or ()):
            if route.retries is not None:
                yield path + ("routes", index, "retries"), route.retries


def retry_condition_inputs(ctx: Context) -> Iterator[Diagnostic]:
    """`retriable-status-codes` with no code (or `retriable-headers` with no header) retries nothing."""
    for where, retries in _all_retries(ctx):
        conditions = retries.retry_on or []
        codes = [c for c in conditions if isinstance(c, int) or c.isdigit()]
        if "retriable-status-codes" in conditions and not codes:
            item = where + ("retryOn", conditions.index("retriable-status-codes"))
            yield error("E611", "retriable-status-codes needs the codes to retry on, listed in retryOn",
                        ctx.at(*item), item, hint="retryOn: [503, 504]")
        if "retriable-headers" in conditions and not retries.retriable_headers:
            item = where + ("retryOn", conditions.index("retriable-headers"))
            yield error("E611", "retriable-headers needs retriableHeaders: the response headers that mean retry",
                        ctx.at(*item), item, hint="retriableHeaders: [x-retry-me]")


def rate_limit_protocol(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.rate_limit is None:
            continue
        where = path + ("rateLimit",)
        if service.protocol is Protocol.TCP:
            yield error("E612", f"'{service.name}' speaks tcp: rateLimit counts HTTP requests",
                        ctx.key(*where), where)
        elif service.endpoints is not None:
            yield error("E612", f"'{service.name}' runs outside the mesh (static endpoints): it has no sidecar to "
                        "enforce rateLimit", ctx.key(*where), where)


def _gateways(ctx: Context) -> Iterator[tuple[Path, Gateway]]:
    for index, gateway in enumerate(ctx.mesh.spec.gateways or ()):
        yield ("spec", "gateways", index), gateway


def gateway_services(ctx: Context) -> Iterator[Diagnostic]:
    by_name = {s.name: s for s in ctx.mesh.spec.services}
    for path, gateway in _gateways(ctx):
        for index, route in enumerate(gateway.routes):
            where = path + ("routes", index, "service")
            target = by_name.get(route.service)
            if target is None:
                hint = _hint(route.service, by_name)
                suffix = f"; did you mean '{hint}'?" if hint else ""
                yield error("E613", f"gateway '{gateway.name}' routes to '{route.service}', which is not a service "
                            f"of this mesh{suffix}", ctx.at(*where), where, hint)
            elif target.protocol is Protocol.TCP:
                yield error("E613", f"gateway '{gateway.name}' routes HTTP requests to '{route.service}', which "
                            "speaks tcp", ctx.at(*where), where)


def _hosts_overlap(a: str, b: str) -> bool:
    """Could one Host header match both? `*` matches all; `*.x.com` any name ending in `.x.com`."""
    if a == "*" or b == "*" or a == b:
        return True
    for wild, other in ((a, b), (b, a)):
        if wild.startswith("*.") and other.endswith(wild[1:]):
            return True
    return False


def gateway_host_overlap(ctx: Context) -> Iterator[Diagnostic]:
    """Behind one DNS name only one LoadBalancer answers: two gateways for a host means one never sees it."""
    claimed: list[tuple[str, str]] = []   # (host, gateway)
    for path, gateway in _gateways(ctx):
        mine: set[str] = set()
        for li, listener in enumerate(gateway.listeners):
            for hi, host in enumerate(listener.hosts):
                if host in mine:
                    continue
                mine.add(host)
                clash = next(((h, g) for h, g in claimed if g != gateway.name and _hosts_overlap(h, host)), None)
                if clash is not None:
                    where = path + ("listeners", li, "hosts", hi)
                    yield error("E614", f"host '{host}' of gateway '{gateway.name}' overlaps '{clash[0]}' of gateway "
                                f"'{clash[1]}'", ctx.at(*where), where, hint="give each host to one gateway")
        claimed += [(h, gateway.name) for h in sorted(mine)]


def gateway_consistency(ctx: Context) -> Iterator[Diagnostic]:
    proxy = ctx.mesh.spec.proxy
    reserved = {proxy.admin_port: "the proxy adminPort", proxy.stats_port: "the proxy statsPort"}
    for path, gateway in _gateways(ctx):
        ports: set[int] = set()
        for index, listener in enumerate(gateway.listeners):
            where = path + ("listeners", index)
            if listener.port in ports or listener.port in reserved:
                clash = reserved.get(listener.port, "another listener of this gateway")
                yield error("E615", f"listener port {listener.port} of gateway '{gateway.name}' is already "
                            f"{clash}", ctx.at(*where, "port"), where + ("port",))
            ports.add(listener.port)
            yield from _duplicate_listener_hosts(ctx, gateway.name, listener.hosts, where)
            if listener.redirect_to_https and listener.tls is not None:
                yield error("E615", f"a listener of gateway '{gateway.name}' both terminates TLS and redirects to "
                            "HTTPS", ctx.key(*where, "redirectToHttps"), where + ("redirectToHttps",))
        if any(li.redirect_to_https for li in gateway.listeners) and not any(li.tls for li in gateway.listeners):
            index = next(i for i, li in enumerate(gateway.listeners) if li.redirect_to_https)
            where = path + ("listeners", index, "redirectToHttps")
            yield error("E615", f"gateway '{gateway.name}' redirects to HTTPS but has no TLS listener",
                        ctx.key(*where), where)
        served = [h for li in gateway.listeners if not li.redirect_to_https for h in li.hosts]
        for index, route in enumerate(gateway.routes):
            host = route.match.host
            if host is not None and not any(_hosts_overlap(host, h) for h in served):
                where = path + ("routes", index, "match", "host")
                yield error("E615", f"gateway '{gateway.name}' routes host '{host}', which none of its listeners "
                            "serves", ctx.at(*where), where)


# A gateway's connection manager normalizes each request's path (RFC 3986: dot segments removed,
# percent-encoded unreserved characters decoded) and merges slashes before its routes see it: no
# request then holds these (the Gateway API refuses the first three too).
_NORMALIZED_AWAY = ("//", "/./", "/../")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _never_after_normalizing(path: str, exact: bool) -> str | None:
    """What of `path` no normalized request path holds, if anything."""
    found = next((part for part in _NORMALIZED_AWAY if part in path), None)
    if found is None and exact and path.endswith(("/.", "/..")):
        found = path[path.rindex("/"):]
    if found is None:
        found = next((m.group() for m in _ESCAPE.finditer(path) if chr(int(m.group()[1:], 16)) in _UNRESERVED), None)
    return found


def _decoded(escape: str) -> str:
    return f" (it is decoded to '{chr(int(escape[1:], 16))}')" if escape.startswith("%") else ""


def gateway_path_normalization(ctx: Context) -> Iterator[Diagnostic]:
    for path, gateway in _gateways(ctx):
        for index, route in enumerate(gateway.routes):
            match = route.match.path
            for field, value in (("prefix", match.prefix), ("exact", match.exact)) if match else ():
                found = _never_after_normalizing(value, field == "exact") if value is not None else None
                if found is not None:
                    where = path + ("routes", index, "match", "path", field)
                    yield error("E621", f"gateway '{gateway.name}' matches path {field} {value!r}, which no request "
                                "matches: the gateway normalizes each request's path and merges its slashes before "
                                f"routing, so no path holds '{found}'{_decoded(found)}", ctx.at(*where), where,
                                hint="write the path as it is once normalized")


def _duplicate_listener_hosts(ctx: Context, gateway: str, hosts: list[str], where: Path) -> Iterator[Diagnostic]:
    """Envoy refuses a route table that lists a domain twice ("Only unique values for domains are
    permitted"); Istio refuses a Gateway server's duplicate hosts too."""
    for index in _repeats(hosts):
        item = where + ("hosts", index)
        yield error("E615", f"a listener of gateway '{gateway}' lists host '{hosts[index]}' twice", ctx.at(*item), item)


def gateway_names(ctx: Context) -> Iterator[Diagnostic]:
    yield from _duplicate_route_names(ctx)
    if not ctx.mesh.spec.gateways:
        return
    seen: set[str] = set()
    claimed = {name for _, service in services(ctx) if service.endpoints is None
               for (_, name), _, _ in _claimed_names(service, ())}
    claimed |= {s.name for s in ctx.mesh.spec.services}
    for path, gateway in _gateways(ctx):
        where = path + ("name",)
        if gateway.name in seen:
            yield error("E616", f"gateway '{gateway.name}' is defined twice", ctx.at(*where), where)
        seen.add(gateway.name)
        generated = object_names.gateway(gateway.name)
        if generated in claimed or len(generated) > MAX_K8S_NAME - len("-envoy"):
            yield error("E616", f"gateway '{gateway.name}' creates objects named '{generated}', a name a service "
                        "already takes or longer than Kubernetes allows", ctx.at(*where), where)


def _duplicate_route_names(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if not service.routes:
            continue
        names: set[str] = set()
        for index, route in enumerate(service.routes or ()):
            if route.name is not None and route.name in names:
                where = path + ("routes", index, "name")
                yield error("E616", f"'{service.name}' has two routes named '{route.name}'", ctx.at(*where), where)
            names.add(route.name or "")


# Shadowing: does every request the later route matches also match the earlier one? Answered
# conservatively: "yes" only when provable from the conditions, so a warning is never wrong.

def _string_covers(earlier: StringMatch, later: StringMatch) -> bool:
    if earlier == later:
        return True
    if earlier.present:
        return later.absent is None
    for value in (later.exact, later.prefix):
        if earlier.prefix is not None and value is not None and value.startswith(earlier.prefix):
            return True
    for value in (later.exact, later.suffix):
        if earlier.suffix is not None and value is not None and value.endswith(earlier.suffix):
            return True
    return False


def _conditions_cover(earlier: dict[str, StringMatch] | None, later: dict[str, StringMatch] | None,
                      fold: bool) -> bool:
    def norm(name: str) -> str:
        return name.lower() if fold else name

    theirs = {norm(k): v for k, v in (later or {}).items()}
    return all(norm(name) in theirs and _string_covers(condition, theirs[norm(name)])
               for name, condition in (earlier or {}).items())


def _path_covers(earlier: PathMatch | None, later: PathMatch | None) -> bool:
    if earlier is None or earlier.prefix == "/":
        return True
    if later is None:
        return False
    if earlier.prefix is not None:
        return any(v is not None and v.startswith(earlier.prefix) for v in (later.prefix, later.exact))
    if earlier.exact is not None:
        return later.exact == earlier.exact
    return earlier.regex is not None and earlier.regex == later.regex


def match_covers(earlier: RouteMatch | None, later: RouteMatch | None) -> bool:
    """True when every request `later` matches is matched by `earlier` too."""
    if earlier is None:
        return True
    later = later or RouteMatch.model_construct()
    if earlier.callers is not None and (later.callers is None or not set(later.callers) <= set(earlier.callers)):
        return False
    if earlier.methods is not None and (later.methods is None or not set(later.methods) <= set(earlier.methods)):
        return False
    return (_path_covers(earlier.path, later.path)
            and _conditions_cover(earlier.headers, later.headers, fold=True)
            and _conditions_cover(earlier.query, later.query, fold=False))


def shadowed_routes(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        routes = service.routes or []
        for index, route in enumerate(routes):
            earlier = next((i for i in range(index) if match_covers(routes[i].match, route.match)), None)
            if earlier is None:
                continue
            where = path + ("routes", index)
            yield warning("W601", f"{_route_label(service, index, route)} can never match: "
                          f"{_route_label(service, earlier, routes[earlier])} comes first and matches every "
                          "request it would", ctx.at(*where), where,
                          hint="put the narrower route first, first match wins")


def shadowed_gateway_routes(ctx: Context) -> Iterator[Diagnostic]:
    for path, gateway in _gateways(ctx):
        for index, route in enumerate(gateway.routes):
            earlier = next((i for i, e in enumerate(gateway.routes[:index])
                            if e.match.host in (None, route.match.host)
                            and _path_covers(e.match.path, route.match.path)), None)
            if earlier is None:
                continue
            where = path + ("routes", index)
            yield warning("W601", f"route {index + 1} of gateway '{gateway.name}' can never match: route "
                          f"{earlier + 1} comes first and matches every request it would", ctx.at(*where), where,
                          hint="put the narrower route first, first match wins")


def total_aborts(ctx: Context) -> Iterator[Diagnostic]:
    for path, service, index, route in routes_of(ctx):
        abort = route.fault.abort if route.fault else None
        match = route.match
        narrowed = match is not None and any(
            getattr(match, f) is not None for f in ("path", "headers", "methods", "query"))
        if abort is not None and abort.percent >= 100 and not narrowed:
            where = path + ("fault", "abort")
            yield warning("W602", f"{_route_label(service, index, route)} aborts every request "
                          f"{'from its callers ' if match and match.callers else ''}to '{service.name}': an outage "
                          "written as config", ctx.at(*where), where,
                          hint="match only test traffic (a header, a path), or lower percent")


Check = Callable[[Context], Iterable[Diagnostic]]

CHECKS: tuple[Check, ...] = (
    duplicate_services,
    unknown_upstreams,
    duplicate_versions,
    duplicate_local_ports,
    local_port_clashes,
    proxy_port_clashes,
    version_weights,
    weighted_needs_weights,
    hash_lb_needs_key,
    hash_key_complete,
    endpoint_weights_ignored,
    static_endpoints_exclusive,
    duplicate_endpoints,
    endpoint_weight_sum,
    external_without_upstreams,
    deployed_needs_image,
    retry_on_known,
    fail_fast_without_retries,
    backoff_order,
    retry_settings_without_attempts,
    retries_blocked_by_circuit_breaker,
    health_check_path,
    health_check_path_unused,
    health_check_timing,
    tcp_route_policies,
    tcp_hash_header,
    etcd_prefix,
    kubernetes_names,
    generated_names_unique,
    analysis_references,
    certificate_renewal,
    external_zero_trust_fields,
    tls_origination_on_external,
    tls_origination_needs_a_name,
    extra_callers_outside_the_mesh,
    external_https_without_tls,
    # workloads
    calls_to_client_only,
    port_needed,
    env_sources,
    env_templates,
    env_unique,
    volume_sources,
    volumes_unique,
    restricted_security,
    init_container_names,
    probe_handlers,
    requests_within_limits,
    autoscaling_range,
    disruption_budget_choice,
    pod_keys,
    pod_scheduling,
    pod_affinity,
    external_without_workload,
    # routing and gateways
    route_versions,
    route_versions_unique,
    route_weights,
    duplicate_list_entries,
    duplicate_extra_callers,
    rewrite_needs_a_prefix,
    route_shapes,
    route_callers,
    tcp_routes,
    header_names,
    unmodifiable_headers,
    header_value_formats,
    mirror_targets,
    mirror_to_itself,
    abort_status,
    regexes,
    retry_condition_inputs,
    rate_limit_protocol,
    gateway_services,
    gateway_host_overlap,
    gateway_consistency,
    gateway_path_normalization,
    gateway_names,
    shadowed_routes,
    shadowed_gateway_routes,
    total_aborts,
)


def check_semantics(mesh: Mesh, positions: Positions) -> list[Diagnostic]:
    ctx = Context(mesh, positions)
    return [diagnostic for check in CHECKS for diagnostic in check(ctx)]


def check_references_raw(data: Any, positions: Positions) -> list[Diagnostic]:
    """The reference checks (E201, E202, E220) on data that failed structural validation, so that
    a spec with a bad port and a misspelt upstream hears about both in one run. Whatever is not
    shaped as expected is skipped: the structural diagnostics already speak about it."""
    raw_services = [(i, s) for i, s in _items(_field(data, "spec", "services")) if isinstance(_field(s, "name"), str)]
    named: list[tuple[Path, str]] = [(("spec", "services", i), s["name"]) for i, s in raw_services]
    names = {name for _, name in named}
    calls: list[tuple[Path, str, str]] = [(("spec", "services", i, "upstreams", j), s["name"], upstream["service"])
             for i, s in raw_services for j, upstream in _items(_field(s, "upstreams"))
             if isinstance(_field(upstream, "service"), str)]
    entry_points = [(i, name) for i, name in _items(_field(data, "spec", "analysis", "entryPoints"))
                    if isinstance(name, str)]
    return [*_duplicate_names(named, positions), *_unknown_callees(calls, names, positions),
            *_unknown_entry_points(entry_points, names, positions)]


def _field(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []
