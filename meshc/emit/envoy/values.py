"""Small Envoy v3 building blocks shared by the emitter's modules: type URLs, durations, addresses."""

from __future__ import annotations

from typing import Any

from meshc import render

Json = dict[str, Any]

ANY_ADDRESS = "0.0.0.0"
LOOPBACK = "127.0.0.1"

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER_FILTER = "envoy.filters.http.router"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_PROTOCOL_OPTIONS_TYPE = f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"
PREVIOUS_HOSTS_PREDICATE = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_HOSTS_TYPE = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"


def duration(millis: int) -> str:
    """A protobuf Duration in JSON: 1500 -> '1.500s', 2000 -> '2s' (exact, no float rounding)."""
    seconds, rest = divmod(millis, 1000)
    return f"{seconds}s" if rest == 0 else f"{seconds}.{rest:03d}s"


def socket_address(address: str, port: int) -> Json:
    return {"socket_address": {"address": address, "port_value": port}}


def typed(type_url: str, **fields: Any) -> Json:
    return {"@type": type_url, **fields}


# Documents are never mutated after they are built, so constant parts are shared, not copied.
ROUTER_FILTERS: list[Json] = [{"name": ROUTER_FILTER, "typed_config": {"@type": ROUTER_TYPE}}]


def discovery_response(type_url: str, resources: list[Json]) -> Json:
    """What a file-based xDS source holds; version_info changes exactly when the content does."""
    return {"version_info": render.content_hash(resources), "type_url": type_url, "resources": resources}
