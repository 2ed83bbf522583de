"""Service records for etcd: what registries and tools read to learn the resolved mesh."""

from __future__ import annotations

import functools
from typing import Any

from meshc import render
from meshc.emit import Documents
from meshc.emit import naming
from meshc.resolve import ir
from meshc.durations import format_duration

# Records spell ~13 durations per service (13,159 at 1,000 services), a few dozen distinct values:
# each is spelled once.
fmt = functools.lru_cache(maxsize=1024)(format_duration)


# etcd refuses a request larger than its --max-request-bytes (1.5 MiB by default): a record whose
# key and value, with a put's framing, exceed it cannot be written at all.
MAX_REQUEST_BYTES = 1536 * 1024
# The largest record meshc accepts: what one of its transactions carries by default
# (meshc.sync.etcd.DEFAULT_MAX_TXN_BYTES, 1 MiB), which leaves etcd's limit room for the compares
# that guard the write. A record that validates can therefore always be applied.
MAX_RECORD_BYTES = 1024 * 1024
PUT_OVERHEAD_BYTES = 64


def record_size(mesh: ir.Mesh, service: ir.Service) -> int:
    """The bytes a put of the service's record sends: key, value and framing."""
    key = naming.etcd_service_key(mesh.etcd_prefix, service.name)
    return len(key.encode()) + len(render.compact(service_record(mesh, service)).encode()) + PUT_OVERHEAD_BYTES


def emit(mesh: ir.Mesh) -> Documents:
    kvs = {naming.etcd_service_key(mesh.etcd_prefix, s.name): render.compact(service_record(mesh, s))
           for s in mesh.services}
    return {naming.ETCD_SEED_PATH: [{"prefix": mesh.etcd_prefix, "kvs": kvs}]}


def service_record(mesh: ir.Mesh, service: ir.Service) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": service.name,
        "namespace": mesh.namespace,
        "port": service.port,
        "protocol": service.protocol.value,
        "deployed": service.deployed,
        "versions": [{"name": v.name, "weight": v.weight, "replicas": v.replicas, "image": v.image}
                     for v in service.versions],
        "loadBalancer": _load_balancing(service.load_balancing),
        "connectTimeout": fmt(service.connect_timeout_ms),
        "endpoints": [{"address": e.address, "port": e.port, "weight": e.weight} for e in service.endpoints],
        "healthCheck": _health_check(service.health_check),
        "outlierDetection": _outlier(service.outlier_detection),
        "circuitBreaker": _circuit(service.circuit_breaker),
        "upstreams": [_upstream(u) for u in service.upstreams],
    }
    if service.routes:
        record["routes"] = [_route(r) for r in service.routes]
    if service.rate_limit is not None:
        limit = service.rate_limit
        record["rateLimit"] = {"requests": limit.requests, "per": fmt(limit.per_ms), "burst": limit.burst}
    if service.identity is not None:   # zero trust: who it is, and who may call it
        record["security"] = {"mtls": service.mtls.value, "identity": service.identity.spiffe_id,
                              "allowedCallers": [c.identity.spiffe_id for c in service.allowed_callers]}
    if service.port is None:   # client-only: it takes no calls, so there is no port to reach it on
        del record["port"]
    record["configHash"] = render.content_hash(record)
    return record


def _load_balancing(lb: ir.LoadBalancing) -> dict[str, Any]:
    key = lb.hash_key
    hash_on: dict[str, Any] | None = None if key is None else (
        {"header": key.header} if key.header else {"sourceIp": True})
    if key is not None and key.cookie is not None:
        hash_on = {"cookie": {"name": key.cookie.name, "path": key.cookie.path,
                              "ttl": fmt(key.cookie.ttl_ms) if key.cookie.ttl_ms is not None else None}}
    elif key is not None and key.query_parameter is not None:
        hash_on = {"queryParameter": key.query_parameter}
    return {"policy": lb.policy.value, "hashOn": hash_on}


def _route(route: ir.Route) -> dict[str, Any]:
    """A request route in the spec's shape (timeout/retries as declared are per caller: left out)."""
    match = route.match
    fault = route.fault
    return {
        "name": route.name,
        "match": {
            "path": {match.path.kind: match.path.value} if match.path else None,
            "headers": {h.name: {h.match.kind: h.match.value if h.match.value is not None else True}
                        for h in match.headers},
            "query": {q.name: {q.match.kind: q.match.value if q.match.value is not None else True} for q in match.query},
            "methods": list(match.methods),
            "callers": list(match.callers) if match.callers is not None else None,
        },
        "versions": [{"name": v.name, "weight": v.weight} for v in route.versions],
        "fault": None if fault is None else {
            "delay": {"duration": fmt(fault.delay_ms), "percent": fault.delay_percent} if fault.delay_ms else None,
            "abort": {"status": fault.abort_status, "grpcStatus": fault.abort_grpc_status, "percent": fault.abort_percent}
            if fault.abort_status is not None or fault.abort_grpc_status is not None else None,
        },
        "mirror": None if route.mirror is None else {"service": route.mirror.service, "version": route.mirror.version,
                                                     "percent": route.mirror.percent},
        "rewrite": {"prefix": route.prefix_rewrite} if route.prefix_rewrite is not None else None,
    }


def _health_check(check: ir.HealthCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {"path": check.path, "interval": fmt(check.interval_ms), "timeout": fmt(check.timeout_ms),
            "healthyThreshold": check.healthy_threshold, "unhealthyThreshold": check.unhealthy_threshold}


def _outlier(outlier: ir.OutlierDetection | None) -> dict[str, Any] | None:
    if outlier is None:
        return None
    return {"consecutive5xx": outlier.consecutive_5xx, "consecutiveGatewayFailure": outlier.consecutive_gateway_failure,
            "interval": fmt(outlier.interval_ms), "baseEjectionTime": fmt(outlier.base_ejection_time_ms),
            "maxEjectionPercent": outlier.max_ejection_percent}


def _circuit(circuit: ir.CircuitBreaker | None) -> dict[str, Any] | None:
    if circuit is None:
        return None
    return {"maxConnections": circuit.max_connections, "maxPendingRequests": circuit.max_pending_requests,
            "maxRequests": circuit.max_requests, "maxRetries": circuit.max_retries}


def _upstream(upstream: ir.Upstream) -> dict[str, Any]:
    # A tcp callee is reached through tcp_proxy, which has no route timeout and no retries: the
    # record says so rather than show values no proxy applies.
    tcp = upstream.protocol is ir.Protocol.TCP
    retries = None if tcp else upstream.retries
    return {
        "service": upstream.service,
        "localPort": upstream.local_port,
        "timeout": None if tcp else fmt(upstream.timeout_ms),
        "failurePolicy": "fail_fast" if upstream.fail_fast else "retry",
        "retries": None if retries is None else {
            "attempts": retries.attempts,
            "perTryTimeout": fmt(retries.per_try_timeout_ms) if retries.per_try_timeout_ms else None,
            "retryOn": list(retries.retry_on),
            "backoff": None if retries.backoff is None else {
                "baseInterval": fmt(retries.backoff.base_interval_ms),
                "maxInterval": fmt(retries.backoff.max_interval_ms)},
        },
        "outlierDetection": _outlier(upstream.destination.outlier_detection),
        "circuitBreaker": _circuit(upstream.destination.circuit_breaker),
    }
