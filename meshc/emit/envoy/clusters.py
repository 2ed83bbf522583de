"""Clusters of one sidecar: `local_app`, and per called service (and version) its caller's copy.

Destination policies (load balancing, outlier detection, circuit breaker, health check, connect
timeout) come from `Upstream.destination`, which already carries this caller's fail_fast overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshc.addresses import is_ip_literal
from meshc.emit import naming
from meshc.emit.envoy.tls import origination_socket
from meshc.emit.envoy.hosts import HostAddress, host_key
from meshc.emit.envoy.values import (
    CLUSTER_TYPE,
    HTTP_PROTOCOL_OPTIONS,
    HTTP_PROTOCOL_OPTIONS_TYPE,
    LOOPBACK,
    Json,
    duration,
    socket_address,
)
from meshc.resolve import ir

LB_POLICIES: Mapping[ir.LbPolicy, str] = {
    ir.LbPolicy.RANDOM: "RANDOM",
    ir.LbPolicy.ROUND_ROBIN: "ROUND_ROBIN",
    ir.LbPolicy.WEIGHTED: "ROUND_ROBIN",     # Envoy's RANDOM ignores endpoint weights; round robin honours them
    ir.LbPolicy.LEAST_REQUEST: "LEAST_REQUEST",
    ir.LbPolicy.RING_HASH: "RING_HASH",
    ir.LbPolicy.MAGLEV: "MAGLEV",
}
H2_PROTOCOLS = frozenset({ir.Protocol.HTTP2, ir.Protocol.GRPC})
RETRY_BUDGET_PERCENT = 20.0          # Envoy's own default once a budget is set
DEFAULT_MIN_RETRY_CONCURRENCY = 3    # Envoy's default max_retries, kept as the budget's floor


@dataclass(frozen=True, slots=True)
class Target:
    """One cluster a route sends to, with its share of requests (percent)."""

    version: ir.Version | None
    cluster: str
    weight: int


def targets(callee: ir.Service, variant: str | None) -> list[Target]:
    """The clusters of a called service: one per version, or one for its static endpoints."""
    if not callee.deployed:
        return [Target(None, _name(naming.cluster_name(callee.name), variant), 100)]
    return [Target(v, _name(naming.cluster_name(callee.name, v), variant), v.weight) for v in callee.versions]


def _name(base: str, variant: str | None) -> str:
    return base if variant is None else naming.cluster_variant_name(base, variant)


# --- the local application ----------------------------------------------------------------

def local_app_cluster(service: ir.Service) -> Json:
    assert service.port is not None, "a client-only service has no local app to route to"
    cluster: Json = {
        "@type": CLUSTER_TYPE,
        "name": naming.LOCAL_APP_CLUSTER,
        "type": "STATIC",
        "connect_timeout": duration(service.connect_timeout_ms),
        "load_assignment": _assignment(naming.LOCAL_APP_CLUSTER, [_lb_endpoint(LOOPBACK, service.port, None)]),
    }
    if service.protocol in H2_PROTOCOLS:
        cluster["typed_extension_protocol_options"] = _h2_options()
    return cluster


# --- a called service ---------------------------------------------------------------------

def upstream_clusters(callee: ir.Service, destination: ir.Destination, route_retries: bool,
                      variant: str | None, inbound_port: int, namespace: str,
                      hosts: Mapping[str, HostAddress]) -> list[Json]:
    """This caller's clusters for one called service, in version order."""
    policies = _policies(callee, destination, route_retries)
    if not callee.deployed:
        name = _name(naming.cluster_name(callee.name), variant)
        endpoints = [_lb_endpoint(e.address, e.port, _weight(e.weight, destination)) for e in callee.endpoints]
        return [_cluster(name, _discovery(e.address for e in callee.endpoints), endpoints, policies)]
    clusters = []
    for target in targets(callee, variant):
        version = target.version
        assert version is not None
        host = hosts.get(host_key(callee.name, version)) or hosts.get(host_key(callee.name))
        address = host.address if host else naming.headless_dns_name(callee.name, version, namespace)
        port = host.port if host and host.port else inbound_port
        discovery = _discovery((address,)) if host else "STRICT_DNS"   # the headless Service's name
        clusters.append(_cluster(target.cluster, discovery, [_lb_endpoint(address, port, None)], policies))
    return clusters


def _cluster(name: str, discovery: str, endpoints: list[Json], policies: Json) -> Json:
    return {"@type": CLUSTER_TYPE, "name": name, "type": discovery,
            "load_assignment": _assignment(name, endpoints), **policies}


def _discovery(addresses: Iterable[str]) -> str:
    """STATIC when every address is an IP literal; STRICT_DNS resolves names (and keeps every A record)."""
    return "STATIC" if all(is_ip_literal(a) for a in addresses) else "STRICT_DNS"


def _weight(weight: int | None, destination: ir.Destination) -> int | None:
    if weight is None and destination.load_balancing.policy is ir.LbPolicy.WEIGHTED:
        return 1
    return weight


def _assignment(name: str, endpoints: list[Json]) -> Json:
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}


def _lb_endpoint(address: str, port: int, weight: int | None) -> Json:
    endpoint: Json = {"endpoint": {"address": socket_address(address, port)}}
    if weight is not None:
        endpoint["load_balancing_weight"] = weight
    return endpoint


def _policies(callee: ir.Service, destination: ir.Destination, route_retries: bool) -> Json:
    """Fields every version's cluster of this callee shares (built once, shared by reference)."""
    policies: Json = {
        "connect_timeout": duration(destination.connect_timeout_ms),
        "lb_policy": LB_POLICIES[destination.load_balancing.policy],
    }
    if destination.outlier_detection is not None:
        policies["outlier_detection"] = outlier_detection(destination.outlier_detection)
    breakers = circuit_breakers(destination.circuit_breaker, route_retries)
    if breakers is not None:
        policies["circuit_breakers"] = breakers
    if destination.health_check is not None:
        policies["health_checks"] = health_checks(destination.health_check, callee)
    if callee.protocol in H2_PROTOCOLS:
        policies["typed_extension_protocol_options"] = _h2_options()
    if callee.external_tls is not None:
        policies["transport_socket"] = origination_socket(callee.external_tls)
    return policies


def _h2_options() -> Json:
    """HTTP/2 to the upstream (prior knowledge), as gRPC and http2 services need."""
    return {HTTP_PROTOCOL_OPTIONS: {"@type": HTTP_PROTOCOL_OPTIONS_TYPE,
                                    "explicit_http_config": {"http2_protocol_options": {}}}}


def outlier_detection(outlier: ir.OutlierDetection) -> Json:
    detection: Json = {
        "consecutive_5xx": outlier.consecutive_5xx,
        "interval": duration(outlier.interval_ms),
        "base_ejection_time": duration(outlier.base_ejection_time_ms),
        "max_ejection_percent": outlier.max_ejection_percent,
        # Only the consecutive-failure rules the spec names eject; Envoy's success-rate rule stays off.
        "enforcing_success_rate": 0,
    }
    if outlier.consecutive_gateway_failure is not None:
        detection["consecutive_gateway_failure"] = outlier.consecutive_gateway_failure
        detection["enforcing_consecutive_gateway_failure"] = 100
    return detection


def circuit_breakers(circuit: ir.CircuitBreaker | None, route_retries: bool) -> Json | None:
    """Thresholds from the spec; where the route retries, a retry budget bounds retries to a share
    of active requests (never below maxRetries concurrent retries). maxRetries 0 keeps retries off."""
    threshold: Json = {"priority": "DEFAULT"}
    if circuit is not None:
        threshold |= {"max_connections": circuit.max_connections,
                      "max_pending_requests": circuit.max_pending_requests,
                      "max_requests": circuit.max_requests,
                      "max_retries": circuit.max_retries}
    min_concurrency = circuit.max_retries if circuit is not None else DEFAULT_MIN_RETRY_CONCURRENCY
    budget = circuit.retry_budget if circuit is not None else None
    if budget is not None:
        threshold["retry_budget"] = retry_budget(budget, min_concurrency)
    elif route_retries and min_concurrency > 0:
        threshold["retry_budget"] = {"budget_percent": {"value": RETRY_BUDGET_PERCENT},
                                     "min_retry_concurrency": min_concurrency}
    return {"thresholds": [threshold]} if len(threshold) > 1 else None


def retry_budget(budget: ir.RetryBudget, max_retries: int) -> Json:
    """The spec's retry budget; what it leaves unset takes the values meshc uses by default."""
    percent = RETRY_BUDGET_PERCENT if budget.percent is None else budget.percent
    floor = max_retries if budget.min_concurrency is None else budget.min_concurrency
    return {"budget_percent": {"value": percent}, "min_retry_concurrency": floor}


def health_checks(check: ir.HealthCheck, callee: ir.Service) -> list[Json]:
    """Active checks in every caller's copy: gRPC Health for grpc, a connect for tcp, else HTTP GET."""
    health: Json = {
        "timeout": duration(check.timeout_ms),
        "interval": duration(check.interval_ms),
        # Envoy would check only every 60s until this caller first sends traffic; the spec's interval
        # holds from the start, so a caller's first request never picks a host that failed meanwhile.
        "no_traffic_interval": duration(check.interval_ms),
        "healthy_threshold": check.healthy_threshold,
        "unhealthy_threshold": check.unhealthy_threshold,
    }
    if callee.protocol is ir.Protocol.GRPC:
        health["grpc_health_check"] = {"authority": callee.name}
    elif callee.protocol is ir.Protocol.TCP:
        health["tcp_health_check"] = {}
    else:
        # The Host header defaults to the cluster name (`catalog|v1`), which strict servers refuse.
        http: Json = {"path": check.path, "host": callee.name}
        if callee.protocol is ir.Protocol.HTTP2:
            http["codec_client_type"] = "HTTP2"
        health["http_health_check"] = http
    return [health]

