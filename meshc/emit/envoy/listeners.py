"""Listeners of one sidecar: `inbound` (pod traffic -> the local app) and one per upstream localPort."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from meshc.emit import naming
from meshc.emit.envoy import http_filters, local_ratelimit
from meshc.emit.envoy.clusters import Target
from meshc.emit.envoy.routes import cluster_choice, route_config, tcp_hash_policy
from meshc.emit.envoy.values import (
    ANY_ADDRESS,
    HCM_FILTER,
    HCM_TYPE,
    LISTENER_TYPE,
    LOOPBACK,
    ROUTER_FILTERS,
    TCP_PROXY_FILTER,
    TCP_PROXY_TYPE,
    Json,
    socket_address,
)
from meshc.resolve import ir

NO_TIMEOUT = "0s"


@dataclass(frozen=True)
class InboundGuard:
    """What features guarding the inbound listener add to it (mTLS, authorization): filters before
    the router or tcp_proxy, listener filters, and per filter chain its match and transport socket."""

    http_filters: list[Json] = field(default_factory=list)
    network_filters: list[Json] = field(default_factory=list)
    listener_filters: list[Json] = field(default_factory=list)
    chains: list[tuple[Json | None, Json | None]] = field(default_factory=lambda: [(None, None)])
    tcp_proxy_fields: Json = field(default_factory=dict)
    listener_fields: Json = field(default_factory=dict)


OPEN = InboundGuard()


def inbound_listener(service: ir.Service, inbound_port: int, http_logs: list[Json], tcp_logs: list[Json],
                     guard: InboundGuard = OPEN) -> Json:
    """Traffic from other sidecars to this pod's app. No route timeout here: the caller's governs."""
    name = naming.INBOUND_LISTENER
    if service.protocol is ir.Protocol.TCP:
        network = _tcp_proxy(name, {"cluster": naming.LOCAL_APP_CLUSTER, **guard.tcp_proxy_fields}, tcp_logs)
    else:
        to_app = {"cluster": naming.LOCAL_APP_CLUSTER, "timeout": NO_TIMEOUT}
        routes = {
            "name": name,
            "virtual_hosts": [{
                "name": naming.LOCAL_APP_CLUSTER,
                "domains": ["*"],
                "routes": [*(_exempt_route(service, path, to_app) for path in local_ratelimit.exempt_paths(service)),
                           {"match": {"prefix": "/"}, "route": to_app}],
            }],
        }
        network = _http_manager(name, routes, http_logs, http_filters.inbound(service, guard.http_filters))
    listener = _listener(name, ANY_ADDRESS, inbound_port, "INBOUND", network)
    if guard is not OPEN:
        listener["filter_chains"] = [_chain(guard.network_filters + [network], match, socket)
                                     for match, socket in guard.chains]
        if guard.listener_filters:
            listener["listener_filters"] = guard.listener_filters
        listener.update(guard.listener_fields)
    return listener


def _chain(filters: list[Json], match: Json | None, transport_socket: Json | None) -> Json:
    chain: Json = {"filters": filters}
    if match is not None:
        chain["filter_chain_match"] = match
    if transport_socket is not None:
        chain["transport_socket"] = transport_socket
    return chain


def _exempt_route(service: ir.Service, path: str, to_app: Json) -> Json:
    return {"match": {"path": path}, "route": to_app,
            "typed_per_filter_config": local_ratelimit.exempt_route_config(service)}


def outbound_listener(upstream: ir.Upstream, targets: Sequence[Target], http_logs: list[Json],
                      tcp_logs: list[Json], services: Mapping[str, ir.Service] | None = None) -> Json:
    """Where the app reaches one upstream: 127.0.0.1:localPort, never reachable from outside the pod."""
    name = naming.outbound_listener_name(upstream.service, upstream.local_port)
    if upstream.protocol is ir.Protocol.TCP:
        proxy = cluster_choice(targets)
        hashing = tcp_hash_policy(upstream.destination.load_balancing)
        if hashing:
            proxy["hash_policy"] = hashing
        network = _tcp_proxy(name, proxy, tcp_logs)
    else:
        network = _http_manager(name, route_config(upstream, targets, services), http_logs,
                                http_filters.outbound(upstream))
    return _listener(name, LOOPBACK, upstream.local_port, "OUTBOUND", network)


def _listener(name: str, address: str, port: int, direction: str, network_filter: Json) -> Json:
    return {
        "@type": LISTENER_TYPE,
        "name": name,
        "address": socket_address(address, port),
        "traffic_direction": direction,
        "filter_chains": [{"filters": [network_filter]}],
    }


def _http_manager(stat_prefix: str, routes: Json, logs: list[Json], filters: list[Json] = ROUTER_FILTERS) -> Json:
    """HTTP/1.1 and HTTP/2 (gRPC) alike: the codec is detected per connection."""
    manager: Json = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": routes,
        "http_filters": filters,
    }
    if logs:
        manager["access_log"] = logs
    return {"name": HCM_FILTER, "typed_config": manager}


def _tcp_proxy(stat_prefix: str, target: Json, logs: list[Json]) -> Json:
    proxy: Json = {"@type": TCP_PROXY_TYPE, "stat_prefix": stat_prefix, **target}
    if logs:
        proxy["access_log"] = logs
    return {"name": TCP_PROXY_FILTER, "typed_config": proxy}
