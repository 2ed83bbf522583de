"""mTLS between sidecars and TLS origination to external services (Envoy's tls transport socket).

Certificates reach Envoy through file-based SDS: `sds-identity.yaml` and `sds-trust.yaml`, beside
cds/lds in the sidecar's config directory, name the certificate files; Envoy watches their
directory, so a renewed certificate (files or the kubelet's `..data` link swapped by rename) is used
by new connections without a restart.

The hooks: what the inbound listener needs (inbound_chains, inbound_listener_fields,
inbound_tcp_proxy_fields), the transport socket of a caller's clusters for an mTLS callee
(mesh_upstream_socket) or an external service with `tls` (origination_socket), what a route to such
a service needs (route_fields), and the extra resources (sds_resources, one file per secret).
"""

from __future__ import annotations

import posixpath

from meshc import defaults
from meshc.emit import naming
from meshc.emit.envoy.values import Json
from meshc.resolve import ir

TLS_SOCKET = "envoy.transport_sockets.tls"
UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TLS_INSPECTOR_TYPE = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
EARLY_DATA_BYTES = 65536   # what inbound tcp_proxy buffers from the caller while the app connection opens
H2_ALPN = ["h2"]
HTTP_ALPN = ["h2", "http/1.1"]
# Sidecars speak TLS 1.3 to each other: both ends are Envoy, so nothing older needs to be accepted.
# A client offers up to TLS 1.2 unless told otherwise; a server accepts 1.3 already.
UPSTREAM_TLS_PARAMS: Json = {"tls_maximum_protocol_version": "TLSv1_3"}
DOWNSTREAM_TLS_PARAMS: Json = {"tls_minimum_protocol_version": "TLSv1_3"}


def tls_dir_of(tls_dir: str, service: str) -> str:
    """`{service}` in the TLS directory becomes the sidecar's name (the layout `meshc ca issue` writes)."""
    return tls_dir.replace("{service}", service)


# --- extra resources: the SDS files -------------------------------------------------------

def sds_resources(tls_dir: str) -> dict[str, Json]:
    """Per SDS file, its one secret: the sidecar's certificate and key, and the mesh CA to verify
    peers with. Both watch the TLS directory, where renewals are renamed into place."""
    def file(name: str) -> Json:
        return {"filename": posixpath.join(tls_dir, name)}

    watched = {"path": tls_dir}
    return {
        naming.SDS_FILES[naming.IDENTITY_SECRET]: {
            "@type": SECRET_TYPE, "name": naming.IDENTITY_SECRET,
            "tls_certificate": {"certificate_chain": file(naming.TLS_CERT_FILE),
                                "private_key": file(naming.TLS_KEY_FILE), "watched_directory": watched}},
        naming.SDS_FILES[naming.TRUST_SECRET]: {
            "@type": SECRET_TYPE, "name": naming.TRUST_SECRET,
            "validation_context": {"trusted_ca": file(naming.TLS_CA_FILE), "watched_directory": watched}},
    }


def sds_config(config_dir: str) -> dict[str, Json]:
    """Per secret, where it comes from: its SDS file, re-read when a new one is moved into the
    config directory."""
    return {secret: {"path_config_source": {"path": posixpath.join(config_dir, filename),
                                            "watched_directory": {"path": config_dir}},
                     "resource_api_version": "V3"}
            for secret, filename in naming.SDS_FILES.items()}


def _common_context(sds: dict[str, Json], peers: list[str], alpn: list[str], params: Json) -> Json:
    """This sidecar's certificate, and a peer certificate that chains to the mesh CA and carries one
    of `peers` as its URI SAN (any mesh identity when `peers` is empty: the RBAC filter decides)."""
    validation: Json = {"name": naming.TRUST_SECRET, "sds_config": sds[naming.TRUST_SECRET]}
    context: Json = {
        "tls_params": params,
        "tls_certificate_sds_secret_configs": [{"name": naming.IDENTITY_SECRET,
                                                "sds_config": sds[naming.IDENTITY_SECRET]}],
        "alpn_protocols": alpn,
    }
    if peers:
        matchers = [{"san_type": "URI", "matcher": {"exact": peer}} for peer in peers]
        context["combined_validation_context"] = {
            "default_validation_context": {"match_typed_subject_alt_names": matchers},
            "validation_context_sds_secret_config": validation,
        }
    else:
        context["validation_context_sds_secret_config"] = validation
    return context


# --- outbound: the caller's side ----------------------------------------------------------

def mesh_upstream_socket(callee: ir.Service, sds: dict[str, Json]) -> Json | None:
    """The caller presents its certificate and accepts only the callee's SPIFFE ID; None when the
    callee takes plaintext (mtls off)."""
    if callee.mtls is ir.MtlsMode.OFF or callee.identity is None:
        return None
    alpn = H2_ALPN if callee.protocol in (ir.Protocol.HTTP2, ir.Protocol.GRPC) else \
        (["http/1.1"] if callee.protocol is ir.Protocol.HTTP else [])
    context: Json = {"@type": UPSTREAM_TLS_TYPE,
                     "common_tls_context": _common_context(sds, [callee.identity.spiffe_id], alpn,
                                                           UPSTREAM_TLS_PARAMS)}
    return {"name": TLS_SOCKET, "typed_config": context}


def origination_socket(tls: ir.ExternalTls) -> Json:
    """TLS to an external service: its name as SNI, a certificate for that name signed by the CA bundle."""
    validation = {
        "trusted_ca": {"filename": tls.ca_bundle or defaults.SYSTEM_CA_FILE},
        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": tls.sni}}],
    }
    context = {"@type": UPSTREAM_TLS_TYPE, "sni": tls.sni,
               "common_tls_context": {"validation_context": validation}}
    return {"name": TLS_SOCKET, "typed_config": context}


def inbound_tcp_proxy_fields(service: ir.Service) -> Json:
    """Under strict mTLS the inbound tcp_proxy opens the app connection only once the caller's
    handshake (and so its identity) has succeeded; by default it would connect at once."""
    if service.mtls is not ir.MtlsMode.STRICT or service.identity is None or service.protocol is not ir.Protocol.TCP:
        return {}
    return {"upstream_connect_mode": "ON_DOWNSTREAM_TLS_HANDSHAKE", "max_early_data_bytes": EARLY_DATA_BYTES}


# Permissive: the TLS inspector waits for a ClientHello; a plaintext client that sends fewer bytes
# than a TLS record header, or waits for the server to speak first, would wait forever. After this
# long the connection is taken as plaintext.
INSPECTOR_TIMEOUT = "1s"


def inbound_listener_fields(service: ir.Service) -> Json:
    """Listener settings for the permissive inbound listener (none otherwise)."""
    if service.mtls is not ir.MtlsMode.PERMISSIVE or service.identity is None:
        return {}
    return {"listener_filters_timeout": INSPECTOR_TIMEOUT, "continue_on_listener_filters_timeout": True}


def route_fields(upstream: ir.Upstream) -> Json:
    """Per route: an external service with TLS is asked for by its own name (Host / :authority)."""
    return {"host_rewrite_literal": upstream.host_rewrite} if upstream.host_rewrite else {}


# --- inbound: the callee's side -----------------------------------------------------------

def inbound_chains(service: ir.Service, sds: dict[str, Json]) -> tuple[list[tuple[Json | None, Json | None]], list[Json]]:
    """(filter_chain_match, transport_socket) of each inbound filter chain, and the listener filters.

    strict: one chain, TLS with a client certificate required. permissive: the TLS inspector tells
    TLS from plaintext, and a second chain takes plaintext. off: one plaintext chain, as without zero trust.
    """
    if service.mtls is ir.MtlsMode.OFF or service.identity is None:
        return [(None, None)], []
    tcp = service.protocol is ir.Protocol.TCP
    # A tcp service checks its callers in the handshake too: network RBAC decides only on the first
    # byte, and a server that speaks first would otherwise greet a caller RBAC is about to refuse.
    peers = [c.identity.spiffe_id for c in service.allowed_callers] \
        if tcp and service.mtls is ir.MtlsMode.STRICT else []
    context: Json = {"@type": DOWNSTREAM_TLS_TYPE, "require_client_certificate": True,
                     "common_tls_context": _common_context(sds, peers, [] if tcp else HTTP_ALPN,
                                                           DOWNSTREAM_TLS_PARAMS)}
    socket = {"name": TLS_SOCKET, "typed_config": context}
    if service.mtls is ir.MtlsMode.STRICT:
        return [(None, socket)], []
    inspector = {"name": TLS_INSPECTOR, "typed_config": {"@type": TLS_INSPECTOR_TYPE}}
    return [({"transport_protocol": "tls"}, socket), ({"transport_protocol": "raw_buffer"}, None)], [inspector]
