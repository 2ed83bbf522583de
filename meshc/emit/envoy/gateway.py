"""An ingress gateway's Envoy: listeners by port (TLS terminated with certificates read through
file-based SDS, or an HTTP->HTTPS redirect), virtual hosts by host, routes by path to mesh
services, 404 for anything else; its clusters are a caller's copies of the services it routes to.

Files: bootstrap.yaml, cds.yaml, lds.yaml and one sds-tls-<secret>.yaml per TLS Secret, in
`envoy/gateway-<name>/`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from meshc.emit import Documents, naming
from meshc.emit.envoy import tls
from meshc.emit.envoy.bootstrap import bootstrap_for, config_dir_of
from meshc.emit.envoy.clusters import targets, upstream_clusters
from meshc.emit.envoy.hosts import HostAddress
from meshc.emit.envoy.route_match import path_match
from meshc.emit.envoy.routes import cluster_choice, hash_policy, retry_policy
from meshc.emit.envoy.values import (
    ANY_ADDRESS,
    CLUSTER_TYPE,
    HCM_FILTER,
    HCM_TYPE,
    LISTENER_TYPE,
    ROUTER_FILTERS,
    Json,
    discovery_response,
    duration,
    socket_address,
)
from meshc.resolve import ir

SECRET_TYPE, TLS_SOCKET, DOWNSTREAM_TLS_TYPE = tls.SECRET_TYPE, tls.TLS_SOCKET, tls.DOWNSTREAM_TLS_TYPE
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"      # the keys of a kubernetes.io/tls Secret
ANY_HOST = "*"
HTTPS_PORT = 443


def gateway_documents(mesh: ir.Mesh, gateway: ir.Gateway, config_dir: str, tls_dir: str,
                      hosts: Mapping[str, HostAddress], shared: Json,
                      mesh_tls_dir: str = naming.DEFAULT_TLS_DIR) -> Documents:
    """File name -> documents; `shared` is bootstrap.proxy_parts(mesh.proxy)."""
    name = naming.gateway_name(gateway.name)
    directory = config_dir_of(config_dir, name)
    documents: Documents = {
        naming.BOOTSTRAP_FILE: [bootstrap_for(mesh, name, directory, shared)],
        naming.CDS_FILE: [discovery_response(CLUSTER_TYPE, clusters(mesh, gateway, hosts, directory))],
        naming.LDS_FILE: [discovery_response(LISTENER_TYPE, listeners(mesh, gateway, directory))],
    }
    for secret in secrets(gateway):
        documents[naming.sds_file(secret)] = [discovery_response(SECRET_TYPE, [tls_secret(secret, tls_dir)])]
    if gateway.identity is not None:   # its own mesh certificate and the mesh CA, as a sidecar has them
        for filename, resource in tls.sds_resources(tls.tls_dir_of(mesh_tls_dir, name)).items():
            documents[filename] = [discovery_response(SECRET_TYPE, [resource])]
    return documents


def secrets(gateway: ir.Gateway) -> list[str]:
    return sorted({li.tls_secret for li in gateway.listeners if li.tls_secret is not None})


def tls_secret(secret: str, tls_dir: str) -> Json:
    """The certificate and key files of a mounted Secret. Watching the directory reloads both when
    Kubernetes swaps the Secret's files (one rename of `..data`): a renewed certificate is served
    without a restart."""
    directory = tls_dir.replace(naming.SECRET_PLACEHOLDER, secret)
    return {
        "@type": SECRET_TYPE,
        "name": secret,
        "tls_certificate": {
            "certificate_chain": {"filename": posixpath.join(directory, TLS_CERT)},
            "private_key": {"filename": posixpath.join(directory, TLS_KEY)},
            "watched_directory": {"path": directory},
        },
    }


# --- clusters -----------------------------------------------------------------------------

def clusters(mesh: ir.Mesh, gateway: ir.Gateway, hosts: Mapping[str, HostAddress], config_dir: str) -> list[Json]:
    """A caller's copy of every service the gateway routes to (the service's own destination
    policies); to an mTLS service it presents the gateway's certificate and accepts only the
    service's identity, as a sidecar does."""
    sds = tls.sds_config(config_dir) if gateway.identity is not None else {}
    result = []
    for name in gateway.services:
        service = mesh.service(name)
        destination = ir.Destination(service.load_balancing, service.connect_timeout_ms,
                                     service.outlier_detection, service.circuit_breaker, service.health_check)
        retries = any(r.retries is not None for r in gateway.routes if r.service == name)
        copies = upstream_clusters(service, destination, retries, None, mesh.proxy.inbound_port, mesh.namespace,
                                   hosts)
        socket = tls.mesh_upstream_socket(service, sds) if gateway.identity is not None else None
        result += copies if socket is None else [{**cluster, "transport_socket": socket} for cluster in copies]
    return result


# --- listeners ----------------------------------------------------------------------------

def listeners(mesh: ir.Mesh, gateway: ir.Gateway, config_dir: str) -> list[Json]:
    """A redirect goes to the first TLS listener's port (left out of the URL when it is 443)."""
    https_port = next((li.port for li in gateway.listeners if li.tls_secret is not None), HTTPS_PORT)
    return [_listener(mesh, gateway, listener, config_dir, https_port) for listener in gateway.listeners]


def _listener(mesh: ir.Mesh, gateway: ir.Gateway, listener: ir.GatewayListener, config_dir: str, https_port: int) -> Json:
    name = f"{naming.gateway_name(gateway.name)}|{listener.port}"
    chain: Json = {"filters": [_http_manager(name, _route_table(mesh, gateway, listener, name, https_port))]}
    if listener.tls_secret is not None:
        chain["transport_socket"] = _tls_socket(listener.tls_secret, config_dir)
    return {
        "@type": LISTENER_TYPE,
        "name": name,
        "address": socket_address(ANY_ADDRESS, listener.port),
        "traffic_direction": "INBOUND",
        "filter_chains": [chain],
    }


def _tls_socket(secret: str, config_dir: str) -> Json:
    sds_path = posixpath.join(config_dir, naming.sds_file(secret))
    return {"name": TLS_SOCKET, "typed_config": {
        "@type": DOWNSTREAM_TLS_TYPE,
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificate_sds_secret_configs": [{
                "name": secret,
                "sds_config": {"path_config_source": {"path": sds_path, "watched_directory": {"path": config_dir}},
                               "resource_api_version": "V3"},
            }],
        },
    }}


def _http_manager(name: str, routes: Json) -> Json:
    return {"name": HCM_FILTER, "typed_config": {
        "@type": HCM_TYPE,
        "stat_prefix": name,
        "codec_type": "AUTO",
        # Host headers carry a port (`shop.example.com:8443`); virtual hosts name hosts only.
        "strip_any_host_port": True,
        "normalize_path": True,
        "merge_slashes": True,
        "use_remote_address": True,
        "route_config": routes,
        "http_filters": ROUTER_FILTERS,
    }}


def _route_table(mesh: ir.Mesh, gateway: ir.Gateway, listener: ir.GatewayListener, name: str, https_port: int) -> Json:
    if listener.redirect_to_https:
        redirect: Json = {"https_redirect": True}
        if https_port != HTTPS_PORT:
            redirect["port_redirect"] = https_port
        hosts = [_virtual_host(host, [{"match": {"prefix": "/"}, "redirect": redirect}]) for host in listener.hosts]
    else:
        hosts = [_virtual_host(host, [*_routes_for(mesh, gateway, host), _not_found()])
                 for host in _domains(gateway, listener)]
    if ANY_HOST not in listener.hosts:
        hosts.append(_virtual_host(ANY_HOST, [_not_found()]))
    return {"name": name, "virtual_hosts": hosts}


def _domains(gateway: ir.Gateway, listener: ir.GatewayListener) -> list[str]:
    """The listener's hosts, and each host a route names (a narrower virtual host under a wildcard)."""
    domains = list(listener.hosts)
    for route in gateway.routes:
        if route.host is not None and route.host not in domains and _serves(listener, route.host):
            domains.append(route.host)
    return domains


def _serves(listener: ir.GatewayListener, host: str) -> bool:
    return any(h == ANY_HOST or h == host or (h.startswith("*.") and host.endswith(h[1:])) for h in listener.hosts)


def _routes_for(mesh: ir.Mesh, gateway: ir.Gateway, host: str) -> list[Json]:
    return [_route(mesh, gateway, index, route) for index, route in enumerate(gateway.routes)
            if route.host is None or route.host == host]


def _virtual_host(host: str, routes: list[Json]) -> Json:
    return {"name": host, "domains": [host], "routes": routes}


def _route(mesh: ir.Mesh, gateway: ir.Gateway, index: int, route: ir.GatewayRoute) -> Json:
    service = mesh.service(route.service)
    hashing = hash_policy(service.load_balancing)       # a hash load balancer needs its key here too
    action: Json = {"timeout": duration(route.timeout_ms)}
    action |= cluster_choice(targets(service, None), hashed=bool(hashing))
    if hashing:
        action["hash_policy"] = hashing
    if route.retries is not None:
        action["retry_policy"] = retry_policy(route.retries)
    if route.prefix_rewrite is not None:
        action["prefix_rewrite"] = route.prefix_rewrite
    return {"name": f"{naming.gateway_name(gateway.name)}|{index}", "match": path_match(route.path), "route": action}


def _not_found() -> Json:
    return {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
