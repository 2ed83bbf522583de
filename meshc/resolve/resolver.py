"""Apply defaults and inheritance (built-in < spec.defaults < service/version/upstream), once."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, TypeVar

from meshc.diagnostics import Span
from meshc.load import Positions
from meshc import defaults as builtin
from meshc import object_names
from meshc.resolve import ir, workloads
from meshc.validate import models as spec
from meshc.vocabulary import FailurePolicy, MtlsMode

Path = tuple[str | int, ...]

_T = TypeVar("_T")


_Spans = workloads.SpanAt   # span(*path): the span of the value at path (Positions.span)


def resolve(mesh: spec.Mesh, positions: Positions) -> ir.Mesh:
    span = positions.span
    defaults = mesh.spec.defaults
    services_by_name = {s.name: s for s in mesh.spec.services}
    indexes = {s.name: i for i, s in enumerate(mesh.spec.services)}
    destinations = {
        s.name: _service_policies(s, defaults, span, ("spec", "services", indexes[s.name]))
        for s in mesh.spec.services
    }
    routes = {s.name: _routes(s, ("spec", "services", indexes[s.name]), span)
              for s in mesh.spec.services if s.routes}
    name = mesh.metadata.name
    namespace = mesh.spec.namespace or name
    security = _security(mesh.spec, span)
    gateways = tuple(sorted((_gateway(g, ("spec", "gateways", i), defaults, span)
                             for i, g in enumerate(mesh.spec.gateways or ())), key=lambda g: g.name))
    if security.enabled:   # a gateway is a mesh member: its ServiceAccount gateway-<name> is its identity
        gateways = tuple(dataclasses.replace(g, identity=identity(
            security.trust_domain, namespace, object_names.gateway(g.name))) for g in gateways)
    upstreams = [_upstreams(s, ("spec", "services", i), defaults, services_by_name, destinations, span, routes, indexes)
                 for i, s in enumerate(mesh.spec.services)]
    trust = _zero_trust(mesh.spec, upstreams, security, namespace, span, gateways)
    services = [_service(s, ("spec", "services", i), span, routes, ups, destinations[s.name], service_trust)
                for i, (s, ups, service_trust) in enumerate(zip(mesh.spec.services, upstreams, trust))]
    return ir.Mesh(
        name=name,
        namespace=namespace,
        etcd_prefix=mesh.spec.etcd.prefix or f"/meshc/{name}",
        proxy=_proxy(mesh.spec.proxy),
        services=tuple(sorted(services, key=lambda s: s.name)),
        analysis=ir.Analysis(
            max_retry_amplification=mesh.spec.analysis.max_retry_amplification,
            entry_points=tuple(sorted(mesh.spec.analysis.entry_points))
            if mesh.spec.analysis.entry_points is not None else None,
        ),
        span=span(),
        gateways=gateways,
        security=security,
    )


def _proxy(proxy: spec.Proxy) -> ir.Proxy:
    return ir.Proxy(
        image=proxy.image,
        admin_port=proxy.admin_port,
        inbound_port=proxy.inbound_port,
        stats_port=proxy.stats_port,
        access_log=proxy.access_log,
        resources=_resources(proxy.resources, None, builtin.PROXY_RESOURCES),
        native_sidecar=proxy.native_sidecar,
        drain_ms=proxy.drain_duration,
    )


def _resources(own: spec.Resources | None, inherited: spec.Resources | None, base: dict[str, str]) -> ir.Resources:
    # The two layers' lists, the nearer first, read field by field (no getattr by name: this runs
    # for every version, ~2,000 times per 1,000 services).
    requests = [r for r in (own.requests if own else None, inherited.requests if inherited else None) if r]
    limits = [r for r in (own.limits if own else None, inherited.limits if inherited else None) if r]
    return ir.Resources(
        cpu_request=_quantity([r.cpu for r in requests]) or base["cpu_request"],
        memory_request=_quantity([r.memory for r in requests]) or base["memory_request"],
        cpu_limit=_quantity([r.cpu for r in limits]) or base["cpu_limit"],
        memory_limit=_quantity([r.memory for r in limits]) or base["memory_limit"],
        storage_request=_quantity([r.ephemeral_storage for r in requests]),
        storage_limit=_quantity([r.ephemeral_storage for r in limits]),
    )


def _quantity(layers: list[object]) -> str | None:
    """The nearest layer's quantity that is set, as text."""
    value = _nearest(*layers)
    return None if value is None else str(value)


def _nearest(*layers: _T | None) -> _T | None:
    """The value of the nearest layer that sets it (the upstream's or service's own, then the
    inherited one's)."""
    for value in layers:
        if value is not None:
            return value
    return None


# --- destination policies (owned by the called service) -------------------------------------

def _service_policies(service: spec.Service, defaults: spec.Defaults, span: _Spans, path: Path) -> ir.Destination:
    lb = service.load_balancer or defaults.load_balancer
    lb_path = path + ("loadBalancer",) if service.load_balancer else ("spec", "defaults", "loadBalancer")
    return ir.Destination(
        load_balancing=_load_balancing(lb, span(*lb_path) if lb else span(*path)),
        connect_timeout_ms=service.connect_timeout or defaults.connect_timeout or builtin.CONNECT_TIMEOUT_MS,
        outlier_detection=_outlier(service.outlier_detection, path + ("outlierDetection",), defaults, span),
        circuit_breaker=_circuit(service.circuit_breaker, path + ("circuitBreaker",), defaults, span),
        health_check=_health_check(service.health_check, span(*path, "healthCheck")),
    )


def _load_balancing(lb: spec.LoadBalancer | None, where: Span) -> ir.LoadBalancing:
    if lb is None:
        return ir.LoadBalancing(ir.LbPolicy.ROUND_ROBIN, None, where)
    key = None
    if lb.hash_on is not None and (lb.hash_on.header or lb.hash_on.source_ip):
        key = ir.HashKey(header=lb.hash_on.header, source_ip=bool(lb.hash_on.source_ip) and not lb.hash_on.header)
    elif lb.hash_on is not None and (lb.hash_on.cookie or lb.hash_on.query_parameter):
        key = _request_hash_key(lb.hash_on)
    return ir.LoadBalancing(lb.policy, key, where)


def _outlier(own: spec.OutlierDetection | None, path: Path, defaults: spec.Defaults,
             span: _Spans) -> ir.OutlierDetection | None:
    chosen = own or defaults.outlier_detection
    if chosen is None:
        return None
    where = span(*path) if own else span("spec", "defaults", "outlierDetection")
    return ir.OutlierDetection(
        consecutive_5xx=chosen.consecutive_5xx or builtin.OUTLIER_CONSECUTIVE_5XX,
        consecutive_gateway_failure=chosen.consecutive_gateway_failure,
        interval_ms=chosen.interval or builtin.OUTLIER_INTERVAL_MS,
        base_ejection_time_ms=chosen.base_ejection_time or builtin.OUTLIER_BASE_EJECTION_MS,
        max_ejection_percent=_first(chosen.max_ejection_percent, builtin.OUTLIER_MAX_EJECTION_PERCENT),
        span=where,
    )


def _circuit(own: spec.CircuitBreaker | None, path: Path, defaults: spec.Defaults,
             span: _Spans) -> ir.CircuitBreaker | None:
    chosen = own or defaults.circuit_breaker
    if chosen is None:
        return None
    where = span(*path) if own else span("spec", "defaults", "circuitBreaker")
    return ir.CircuitBreaker(
        max_connections=chosen.max_connections or builtin.CIRCUIT_MAX_CONNECTIONS,
        max_pending_requests=_first(chosen.max_pending_requests, builtin.CIRCUIT_MAX_PENDING),
        max_requests=chosen.max_requests or builtin.CIRCUIT_MAX_REQUESTS,
        max_retries=_first(chosen.max_retries, builtin.CIRCUIT_MAX_RETRIES),
        span=where,
        retry_budget=ir.RetryBudget(chosen.retry_budget.percent, chosen.retry_budget.min_concurrency)
        if chosen.retry_budget is not None else None,
    )


def _health_check(check: spec.HealthCheck | None, where: Span) -> ir.HealthCheck | None:
    if check is None:
        return None
    return ir.HealthCheck(check.path, check.interval, check.timeout, check.healthy_threshold,
                          check.unhealthy_threshold, where)


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


# --- services and their routes ------------------------------------------------------------

def _upstreams(service: spec.Service, path: Path, defaults: spec.Defaults, by_name: dict[str, spec.Service],
               destinations: dict[str, ir.Destination], span: _Spans,
               routes: dict[str, tuple[ir.Route, ...]], indexes: dict[str, int]) -> list[ir.Upstream]:
    """The service's upstreams, with the callees' routes as it applies them, in the spec's order."""
    upstreams = [
        _upstream(u, path + ("upstreams", i), defaults, by_name[u.service], destinations[u.service], span)
        for i, u in enumerate(service.upstreams)
    ]
    return [
        _with_routes(up, service.name, u, by_name[u.service], routes[u.service],
                     ("spec", "services", indexes[u.service]), defaults, span) if u.service in routes else up
        for up, u in zip(upstreams, service.upstreams)
    ]


def _service(service: spec.Service, path: Path, span: _Spans, routes: dict[str, tuple[ir.Route, ...]],
             upstreams: list[ir.Upstream], own: ir.Destination, trust: _Trust) -> ir.Service:
    # Made once, with its zero-trust fields: a dataclasses.replace of a Service costs as much as
    # the rest of its making.
    return ir.Service(
        name=service.name,
        port=service.port,
        protocol=service.protocol,
        deployed=service.endpoints is None,
        versions=_versions(service, path, span, workloads.upstream_env(service, path, upstreams, span)),
        endpoints=tuple(sorted(
            (ir.Endpoint(e.address, e.port, e.weight, span(*path, "endpoints", i))
             for i, e in enumerate(service.endpoints or ())),
            key=lambda e: (e.address, e.port),
        )),
        load_balancing=own.load_balancing,
        connect_timeout_ms=own.connect_timeout_ms,
        outlier_detection=own.outlier_detection,
        circuit_breaker=own.circuit_breaker,
        health_check=own.health_check,
        upstreams=trust.upstreams,
        env=tuple(sorted((k, v) for k, v in (service.env or {}).items() if isinstance(v, str))),
        span=span(*path),
        service_port=service.service_port or service.port,
        volumes=workloads.volumes(service, path, span),
        security=workloads.security(service.security_context),
        init_containers=workloads.init_containers(service, path, span, _init_resources),
        probes=workloads.probes(service, path, span),
        pod=workloads.pod(service),
        routes=routes.get(service.name, ()),
        rate_limit=_rate_limit(service.rate_limit, path + ("rateLimit",), span),
        identity=trust.identity,
        mtls=trust.mtls,
        allowed_callers=trust.allowed_callers,
        external_tls=trust.external_tls,
    )


def _versions(service: spec.Service, path: Path, span: _Spans,
              upstream_env: dict[str, ir.EnvVar]) -> tuple[ir.Version, ...]:
    if service.endpoints is not None:
        return ()
    service_env = workloads.env_map(service.env, path + ("env",), span) if service.env else {}
    scaling = workloads.autoscaling(service, path, span)
    if not service.versions:
        replicas = _first(service.replicas, builtin.REPLICAS)
        return (ir.Version(
            name=builtin.IMPLICIT_VERSION, implicit=True, image=service.image or "",
            replicas=replicas, weight=100,
            resources=_resources(service.resources, None, builtin.APP_RESOURCES), span=span(*path),
            command=_strings(service.command), args=_strings(service.args),
            env=workloads.app_env(upstream_env, service_env), autoscaling=scaling,
            disruption_budget=workloads.disruption_budget(service, path, span, replicas, scaling),
        ),)
    versions = []
    for i, v in enumerate(service.versions):
        replicas = _first(v.replicas, _first(service.replicas, builtin.REPLICAS))
        where = path + ("versions", i)
        versions.append(ir.Version(
            name=v.name, implicit=False, image=v.image or service.image or "",
            replicas=replicas,
            weight=_first(v.weight, 100),
            resources=_resources(v.resources, service.resources, builtin.APP_RESOURCES),
            span=span(*where),
            command=_strings(v.command if v.command is not None else service.command),
            args=_strings(v.args if v.args is not None else service.args),
            env=workloads.app_env(upstream_env, service_env, workloads.env_map(v.env, where + ("env",), span))
            if v.env else workloads.app_env(upstream_env, service_env),
            autoscaling=scaling,
            disruption_budget=workloads.disruption_budget(service, path, span, replicas, scaling, where),
        ))
    return tuple(sorted(versions, key=lambda v: v.name))


def _init_resources(own: spec.Resources | None) -> ir.Resources:
    return _resources(own, None, builtin.APP_RESOURCES)


def _strings(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def _upstream(upstream: spec.Upstream, path: Path, defaults: spec.Defaults, callee: spec.Service,
              destination: ir.Destination, span: _Spans) -> ir.Upstream:
    fail_fast = (upstream.failure_policy or defaults.failure_policy) is FailurePolicy.FAIL_FAST
    retries = None if fail_fast else _retries(upstream.retries, defaults.retries, path, span)
    return ir.Upstream(
        service=upstream.service,
        local_port=upstream.local_port,
        protocol=callee.protocol,
        timeout_ms=upstream.timeout or defaults.timeout or builtin.ROUTE_TIMEOUT_MS,
        retries=retries if retries is not None and retries.attempts > 0 else None,
        fail_fast=fail_fast,
        destination=_fail_fast_destination(destination, span(*path)) if fail_fast else destination,
        span=span(*path),
    )


def _retries(own: spec.Retries | None, inherited: spec.Retries | None, path: Path,
             span: _Spans) -> ir.RetryPolicy:
    """Field by field: the upstream's retries, then spec.defaults.retries, then built-ins."""

    # Each field from the nearest layer that sets it, read directly (~1,600 policies per 1,000
    # services).
    attempts = _nearest(own.attempts if own else None, inherited.attempts if inherited else None)
    per_try = _nearest(own.per_try_timeout if own else None, inherited.per_try_timeout if inherited else None)
    # may hold status codes as numbers until _with_retry_inputs makes them retriable_status_codes
    retry_on: object = _nearest(own.retry_on if own else None, inherited.retry_on if inherited else None)
    headers = _nearest(own.retriable_headers if own else None, inherited.retriable_headers if inherited else None)
    backoff = _backoff(own.backoff if own else None, inherited.backoff if inherited else None)
    where = span(*path, "retries") if own else (span("spec", "defaults", "retries") if inherited else span(*path))
    return _with_retry_inputs(ir.RetryPolicy(
        attempts=attempts if isinstance(attempts, int) else builtin.RETRY_ATTEMPTS,
        per_try_timeout_ms=per_try if isinstance(per_try, int) else None,
        retry_on=tuple(retry_on) if isinstance(retry_on, list) else builtin.RETRY_ON,
        backoff=backoff,
        span=where,
    ), headers)


def _backoff(own: spec.Backoff | None, inherited: spec.Backoff | None) -> ir.Backoff:
    base = (own.base_interval if own else None) or (inherited.base_interval if inherited else None) \
        or builtin.BACKOFF_BASE_MS
    maximum = (own.max_interval if own else None) or (inherited.max_interval if inherited else None)
    return ir.Backoff(base, max(base, maximum or base * builtin.BACKOFF_MAX_FACTOR))


def _fail_fast_destination(destination: ir.Destination, where: Span) -> ir.Destination:
    """fail_fast: outlier detection on and a tiny pending queue, in this caller's copy only."""
    outlier = destination.outlier_detection or ir.OutlierDetection(
        consecutive_5xx=builtin.FAIL_FAST_CONSECUTIVE_5XX, consecutive_gateway_failure=None,
        interval_ms=builtin.FAIL_FAST_INTERVAL_MS, base_ejection_time_ms=builtin.FAIL_FAST_BASE_EJECTION_MS,
        max_ejection_percent=builtin.FAIL_FAST_MAX_EJECTION_PERCENT, span=where,
    )
    circuit = destination.circuit_breaker
    pending = min(circuit.max_pending_requests if circuit else builtin.FAIL_FAST_MAX_PENDING,
                  builtin.FAIL_FAST_MAX_PENDING)
    return ir.Destination(
        load_balancing=destination.load_balancing,
        connect_timeout_ms=destination.connect_timeout_ms,
        outlier_detection=outlier,
        circuit_breaker=ir.CircuitBreaker(
            max_connections=circuit.max_connections if circuit else builtin.CIRCUIT_MAX_CONNECTIONS,
            max_pending_requests=pending,
            max_requests=circuit.max_requests if circuit else builtin.CIRCUIT_MAX_REQUESTS,
            max_retries=0,
            span=circuit.span if circuit else where,
        ),
        health_check=destination.health_check,
    )


# --- request routing, rate limits and gateways --------------------------------------------

_RETRY_STATUS_CODES = "retriable-status-codes"
_RETRY_HEADERS = "retriable-headers"


def _with_retry_inputs(policy: ir.RetryPolicy, headers: object) -> ir.RetryPolicy:
    """HTTP status codes in retryOn become retriable_status_codes (and imply that condition);
    retriableHeaders imply retriable-headers."""
    if not headers and all(type(c) is str and not c.isdigit() for c in policy.retry_on):
        return policy   # the usual case: named conditions only, nothing to add
    conditions = [str(c) for c in policy.retry_on]
    codes = sorted({int(c) for c in conditions if c.isdigit()})
    named = [c for c in conditions if not c.isdigit()]
    header_names = tuple(headers) if isinstance(headers, list) else ()
    if codes and _RETRY_STATUS_CODES not in named:
        named.append(_RETRY_STATUS_CODES)
    if header_names and _RETRY_HEADERS not in named:
        named.append(_RETRY_HEADERS)
    if not codes and not header_names and len(named) == len(policy.retry_on):
        return policy
    return dataclasses.replace(policy, retry_on=tuple(named), retriable_status_codes=tuple(codes),
                               retriable_headers=header_names)


def _request_hash_key(hash_on: spec.HashOn) -> ir.HashKey:
    cookie = hash_on.cookie
    return ir.HashKey(
        header=None, source_ip=False,
        cookie=ir.CookieKey(cookie.name, cookie.ttl, cookie.path) if cookie is not None else None,
        query_parameter=hash_on.query_parameter if cookie is None else None,
    )


def _string_match(match: spec.StringMatch) -> ir.StringMatch:
    for kind in ("exact", "prefix", "suffix", "regex"):
        value = getattr(match, kind)
        if value is not None:
            return ir.StringMatch(kind, value)
    return ir.StringMatch("absent" if match.absent else "present", None)


def _path_match(match: spec.PathMatch | None) -> ir.PathMatch | None:
    if match is None:
        return None
    for kind in ("prefix", "exact", "regex"):
        value = getattr(match, kind)
        if value is not None:
            return ir.PathMatch(kind, value)
    return None


def _route_match(match: spec.RouteMatch | None) -> ir.RouteMatch:
    if match is None:
        return ir.RouteMatch(None, (), (), (), None)
    return ir.RouteMatch(
        path=_path_match(match.path),
        headers=tuple(ir.NamedMatch(n, _string_match(m)) for n, m in (match.headers or {}).items()),
        methods=tuple(match.methods or ()),
        query=tuple(ir.NamedMatch(n, _string_match(m)) for n, m in (match.query or {}).items()),
        callers=tuple(sorted(match.callers)) if match.callers is not None else None,
    )


def _header_changes(changes: spec.HeaderChanges | None) -> ir.HeaderChanges:
    if changes is None:
        return ir.NO_HEADER_CHANGES
    return ir.HeaderChanges(tuple((changes.set or {}).items()), tuple(changes.remove or ()))


def _fault(fault: spec.Fault | None, where: Span) -> ir.Fault | None:
    if fault is None:
        return None
    delay, abort = fault.delay, fault.abort
    return ir.Fault(
        delay_ms=delay.duration if delay else None, delay_percent=delay.percent if delay else 0.0,
        abort_status=abort.status if abort else None, abort_grpc_status=abort.grpc_status if abort else None,
        abort_percent=abort.percent if abort else 0.0, span=where,
    )


def _routes(service: spec.Service, path: Path, span: _Spans) -> tuple[ir.Route, ...]:
    """A service's declared routes; their timeout and retries are resolved per caller later."""
    routes = []
    for index, route in enumerate(service.routes or ()):
        where = path + ("routes", index)
        versions = tuple(ir.VersionShare(v.name, v.weight) for v in route.versions or ()) or \
            ((ir.VersionShare(route.version, 100),) if route.version else ())
        mirror = route.mirror
        routes.append(ir.Route(
            name=route.name, index=index, match=_route_match(route.match), versions=versions,
            timeout_ms=route.timeout, retries=None, retries_set=route.retries is not None,
            fault=_fault(route.fault, span(*where, "fault")),
            mirror=ir.Mirror(mirror.service or service.name, mirror.version, mirror.percent, span(*where, "mirror"))
            if mirror is not None else None,
            prefix_rewrite=route.rewrite.prefix if route.rewrite else None,
            request_headers=_header_changes(route.headers.request if route.headers else None),
            response_headers=_header_changes(route.headers.response if route.headers else None),
            span=span(*where),
        ))
    return tuple(routes)


def _layered(upper: spec.Retries | None, lower: spec.Retries | None) -> spec.Retries | None:
    """Field by field, `upper` where it says something, else `lower`."""
    if upper is None or lower is None:
        return upper or lower
    fields = {name: getattr(upper, name) if getattr(upper, name) is not None else getattr(lower, name)
              for name in spec.Retries.model_fields}
    return spec.Retries.model_construct(**fields)


def _with_routes(upstream: ir.Upstream, caller: str, declared: spec.Upstream, callee: spec.Service,
                 declared_routes: tuple[ir.Route, ...], callee_path: Path, defaults: spec.Defaults,
                 span: _Spans) -> ir.Upstream:
    """The callee's routes as this caller applies them: only those scoped to it (or to everyone),
    with the route's timeout and retries over this caller's own (retries field by field)."""
    routes = []
    for index, route in enumerate(callee.routes or ()):
        callers = route.match.callers if route.match else None
        if callers is not None and caller not in callers:
            continue
        retries = upstream.retries
        if route.retries is not None:
            where = callee_path + ("routes", index)
            resolved = _retries(route.retries, _layered(declared.retries, defaults.retries), where, span)
            retries = resolved if resolved.attempts > 0 else None
        routes.append((index, route.timeout or upstream.timeout_ms, retries, route.retries is not None))
    return dataclasses.replace(upstream, routes=tuple(
        dataclasses.replace(declared_routes[index], timeout_ms=timeout, retries=retries, retries_set=own)
        for index, timeout, retries, own in routes))


def _rate_limit(limit: spec.RateLimit | None, path: Path, span: _Spans) -> ir.RateLimit | None:
    if limit is None:
        return None
    return ir.RateLimit(limit.requests, limit.per, limit.burst or limit.requests, span(*path))


def _gateway(gateway: spec.Gateway, path: Path, defaults: spec.Defaults, span: _Spans) -> ir.Gateway:
    listeners = tuple(
        ir.GatewayListener(li.port, tuple(li.hosts), li.tls.secret_name if li.tls else None, li.redirect_to_https,
                           span(*path, "listeners", i))
        for i, li in enumerate(gateway.listeners))
    routes = []
    for index, route in enumerate(gateway.routes):
        where = path + ("routes", index)
        retries = _retries(None, defaults.retries, where, span) if (defaults.failure_policy
                                                                      is not FailurePolicy.FAIL_FAST) else None
        routes.append(ir.GatewayRoute(
            host=route.match.host, path=_path_match(route.match.path), service=route.service,
            timeout_ms=route.timeout or defaults.timeout or builtin.ROUTE_TIMEOUT_MS,
            retries=retries if retries is not None and retries.attempts > 0 else None,
            prefix_rewrite=route.rewrite.prefix if route.rewrite else None, span=span(*where)))
    return ir.Gateway(gateway.name, gateway.replicas, listeners, tuple(routes), span(*path))
# --- zero trust: identities and who may call whom -----------------------------------------

def _security(mesh: spec.MeshSpec, span: _Spans) -> ir.Security:
    security = mesh.security
    ref = security.certificates.issuer_ref
    return ir.Security(
        mtls=security.mtls,
        trust_domain=security.trust_domain,
        certificates=ir.Certificates(
            issuer_kind=ref.kind if ref else "Issuer",
            issuer_name=ref.name if ref else builtin.MESH_ISSUER,
            emit_issuer=ref is None,
            duration_ms=security.certificates.duration,
            renew_before_ms=security.certificates.renew_before,
        ),
        network_policies=security.network_policies,
        monitoring_namespace=security.monitoring_namespace,
        enabled=any((s.mtls or security.mtls) is not MtlsMode.OFF for s in mesh.services),
        span=span("spec", "security"),
    )


def identity(trust_domain: str, namespace: str, service_account: str) -> ir.Identity:
    return ir.Identity(namespace, service_account, f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")


class _Trust(NamedTuple):
    """A service's zero-trust fields (and its upstreams, with an external callee's host rewrite)."""

    identity: ir.Identity | None
    mtls: MtlsMode
    allowed_callers: tuple[ir.Caller, ...]
    external_tls: ir.ExternalTls | None
    upstreams: tuple[ir.Upstream, ...]


def _zero_trust(mesh: spec.MeshSpec, upstreams: list[list[ir.Upstream]], security: ir.Security,
                namespace: str, span: _Spans, gateways: tuple[ir.Gateway, ...] = ()) -> list[_Trust]:
    """Identities, modes and allowed callers of each service (upstreams: each one's, in the spec's
    order). Authorization is decided here, once: a service may be called by the services that list
    it in `upstreams` and by its `extraCallers`, no one else."""
    ordered = [tuple(sorted(calls, key=lambda u: (u.service, u.local_port))) for calls in upstreams]
    identities = {s.name: identity(security.trust_domain, namespace, s.name) for s in mesh.services}
    callers: dict[str, dict[str, ir.Caller]] = {s.name: {} for s in mesh.services}
    for service, calls in zip(mesh.services, ordered):
        for upstream in calls:
            callers[upstream.service].setdefault(service.name, ir.Caller(
                identities[service.name], service.name, upstream.span))
            for route in upstream.routes:   # a mirror calls its target from this caller's sidecar
                if route.mirror is not None and route.mirror.service != upstream.service:
                    callers[route.mirror.service].setdefault(service.name, ir.Caller(
                        identities[service.name], service.name, route.mirror.span))
    for gateway in gateways:      # a gateway is a mesh caller of every service it routes to
        account = object_names.gateway(gateway.name)
        for name in gateway.services:
            callers[name].setdefault(account, ir.Caller(
                gateway.identity or identity(security.trust_domain, namespace, account), None, gateway.span,
                gateway=gateway.name))
    external = {s.name: _external_tls(s, ("spec", "services", i), span) for i, s in enumerate(mesh.services)}
    trust = []
    for index, (own, calls) in enumerate(zip(mesh.services, ordered)):
        deployed = own.endpoints is None
        allowed = list(callers[own.name].values()) + [
            ir.Caller(identity(security.trust_domain, extra.namespace, extra.service_account), None,
                      span("spec", "services", index, "extraCallers", i))
            for i, extra in enumerate(own.extra_callers or ())
        ]
        trust.append(_Trust(
            identity=identities[own.name] if security.enabled and deployed else None,
            mtls=(own.mtls or security.mtls) if deployed else MtlsMode.OFF,
            allowed_callers=tuple(sorted({c.identity.spiffe_id: c for c in allowed}.values(),
                                         key=lambda c: c.identity.spiffe_id)),
            external_tls=external[own.name],
            upstreams=tuple(_rewritten(u, external[u.service]) for u in calls),
        ))
    return trust


def _rewritten(upstream: ir.Upstream, tls: ir.ExternalTls | None) -> ir.Upstream:
    if tls is None or tls.host_rewrite is None:
        return upstream
    return dataclasses.replace(upstream, host_rewrite=tls.host_rewrite)


def _external_tls(service: spec.Service, path: Path, span: _Spans) -> ir.ExternalTls | None:
    tls = service.tls
    if tls is None or service.endpoints is None:
        return None
    sni = tls.sni or service.endpoints[0].address
    return ir.ExternalTls(
        sni=sni,
        ca_bundle=None if tls.ca_bundle == builtin.SYSTEM_CA_BUNDLE else tls.ca_bundle,
        host_rewrite=sni if tls.host_rewrite else None,
        span=span(*path, "tls"),
    )
