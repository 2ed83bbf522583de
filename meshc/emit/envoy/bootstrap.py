"""The sidecar's bootstrap: node, loopback-only admin, the stats listener, file-based CDS/LDS.

The bootstrap holds only what belongs to the proxy itself; every route and cluster lives in
cds.yaml / lds.yaml, which Envoy reloads when a new file is moved into the config directory.
"""

from __future__ import annotations

import posixpath

from meshc.emit import naming
from meshc.emit.envoy.values import (
    ANY_ADDRESS,
    HCM_FILTER,
    HCM_TYPE,
    LOOPBACK,
    ROUTER_FILTERS,
    Json,
    duration,
    socket_address,
)
from meshc.resolve import ir

ADMIN_CONNECT_TIMEOUT_MS = 250
SERVICE_PLACEHOLDER = "{service}"


def config_dir_of(config_dir: str, service: str) -> str:
    """The sidecar's config directory; `{service}` in it gives each sidecar of a host its own."""
    return config_dir.replace(SERVICE_PLACEHOLDER, service)


def proxy_parts(proxy: ir.Proxy) -> Json:
    """What every bootstrap of a mesh shares: admin, the stats listener and the admin cluster."""
    return {
        "admin": {"address": socket_address(LOOPBACK, proxy.admin_port)},
        "static_resources": {"listeners": [stats_listener(proxy)], "clusters": [admin_cluster(proxy)]},
    }


def bootstrap(mesh: ir.Mesh, service: ir.Service, config_dir: str, shared: Json) -> Json:
    """`shared` is proxy_parts(mesh.proxy), built once per mesh."""
    return bootstrap_for(mesh, service.name, config_dir_of(config_dir, service.name), shared)


def bootstrap_for(mesh: ir.Mesh, name: str, config_dir: str, shared: Json) -> Json:
    """The bootstrap of the proxy `name` (a sidecar's service, or a gateway) reading its own config_dir."""
    return {
        "node": {"id": naming.node_id(mesh, name), "cluster": name},
        **shared,
        "dynamic_resources": {
            "cds_config": _file_source(config_dir, "cds.yaml"),
            "lds_config": _file_source(config_dir, "lds.yaml"),
        },
    }


def _file_source(config_dir: str, filename: str) -> Json:
    """File-based xDS: Envoy re-reads the file when one is moved into the watched directory."""
    return {
        "path_config_source": {
            "path": posixpath.join(config_dir, filename),
            "watched_directory": {"path": config_dir},
        },
        "resource_api_version": "V3",
    }


def stats_listener(proxy: ir.Proxy) -> Json:
    """Prometheus scrapes and readiness probes reach admin through here; nothing else of admin does."""
    return {
        "name": naming.STATS_LISTENER,
        "address": socket_address(ANY_ADDRESS, proxy.stats_port),
        "filter_chains": [{"filters": [{
            "name": HCM_FILTER,
            "typed_config": {
                "@type": HCM_TYPE,
                "stat_prefix": naming.STATS_LISTENER,
                "codec_type": "AUTO",
                "normalize_path": True,
                "merge_slashes": True,
                "route_config": {
                    "name": naming.STATS_LISTENER,
                    "virtual_hosts": [{
                        "name": naming.STATS_LISTENER,
                        "domains": ["*"],
                        "routes": [_admin_route(naming.SIDECAR_METRICS_PATH),
                                   _admin_route(naming.SIDECAR_READY_PATH), _not_found()],
                    }],
                },
                "http_filters": ROUTER_FILTERS,
            },
        }]}],
    }


def _admin_route(path: str) -> Json:
    """An exact path (the query string is not part of it), GET only, proxied to admin."""
    return {
        "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "route": {"cluster": naming.ADMIN_CLUSTER},
    }


def _not_found() -> Json:
    return {"match": {"prefix": "/"}, "direct_response": {"status": 404}}


def admin_cluster(proxy: ir.Proxy) -> Json:
    return {
        "name": naming.ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": duration(ADMIN_CONNECT_TIMEOUT_MS),
        "load_assignment": {
            "cluster_name": naming.ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(LOOPBACK, proxy.admin_port)}}]}],
        },
    }
