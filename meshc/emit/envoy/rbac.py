"""Authorization on the inbound listener: only the service's allowed callers (its declared callers and
`extraCallers`, from `Service.allowed_callers`) may call it, recognised by the SPIFFE ID in their
client certificate.

HTTP RBAC for http/http2/grpc (a denied request gets 403), network RBAC for tcp (a denied
connection is closed). In permissive mode the same rules run as shadow rules: nothing is denied,
and `...rbac.meshc_authz.shadow_denied` counts what strict mode would deny.
"""

from __future__ import annotations

from meshc.emit import naming
from meshc.emit.envoy.values import Json
from meshc.resolve import ir

HTTP_RBAC = "envoy.filters.http.rbac"
HTTP_RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
NETWORK_RBAC = "envoy.filters.network.rbac"
NETWORK_RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"


def needs_rbac(service: ir.Service) -> bool:
    return service.mtls is not ir.MtlsMode.OFF and service.identity is not None


def rules(service: ir.Service) -> Json:
    """ALLOW the allowed callers, each by its certificate's URI SAN; with none, every call is denied."""
    principals = [{"authenticated": {"principal_name": {"exact": caller.identity.spiffe_id}}}
                  for caller in service.allowed_callers]
    policies = {naming.authz_policy_name(service.name): {"permissions": [{"any": True}], "principals": principals}} \
        if principals else {}
    return {"action": "ALLOW", "policies": policies}


def _config(service: ir.Service, type_url: str) -> Json:
    key = "shadow_rules" if service.mtls is ir.MtlsMode.PERMISSIVE else "rules"
    return {"@type": type_url, key: rules(service), "shadow_rules_stat_prefix": naming.AUTHZ_STAT_PREFIX}


def http_filters(service: ir.Service) -> list[Json]:
    """Before the router in the inbound HTTP connection manager."""
    if not needs_rbac(service) or service.protocol is ir.Protocol.TCP:
        return []
    return [{"name": HTTP_RBAC, "typed_config": _config(service, HTTP_RBAC_TYPE)}]


def network_filters(service: ir.Service) -> list[Json]:
    """Before tcp_proxy on the inbound listener of a tcp service."""
    if not needs_rbac(service) or service.protocol is not ir.Protocol.TCP:
        return []
    config = _config(service, NETWORK_RBAC_TYPE)
    config["stat_prefix"] = naming.INBOUND_LISTENER
    return [{"name": NETWORK_RBAC, "typed_config": config}]
