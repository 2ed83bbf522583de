"""One NetworkPolicy per deployed service, from the call graph: the network-level half of zero trust.

Ingress: the sidecar's inbound port from the pods of the service's declared callers (and the
namespaces of its `extraCallers`), the stats port from `monitoringNamespace` (any namespace when
unset). Egress: DNS, each called mesh service's inbound port, and external endpoints (IP addresses
as /32 or /128 blocks; a host name cannot be written in a NetworkPolicy, so those open their port
to any address, which validation warns about).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from typing import Any

from meshc import kinds
from meshc.emit import naming
from meshc.emit.kubernetes.objects import Object, new_object, with_config_hash
from meshc.resolve import ir

Rule = dict[str, Any]
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"   # set on every Namespace by the API server
DNS_PORT = 53
DNS_NAMESPACE = "kube-system"


def network_policy(mesh: ir.Mesh, service: ir.Service) -> Object | None:
    security = mesh.security
    if security is None or not security.enabled or not security.network_policies or service.identity is None:
        return None
    obj = new_object(kinds.NETWORK_POLICY, naming.network_policy_name(service.name), mesh.namespace,
                     naming.service_labels(mesh, service.name))
    obj["spec"] = {
        "podSelector": {"matchLabels": naming.service_selector(service.name)},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": ingress(mesh, service, security.monitoring_namespace),
        "egress": egress(mesh, service),
    }
    return with_config_hash(obj)


def _port(number: int, protocol: str = "TCP") -> Rule:
    return {"port": number, "protocol": protocol}


def _namespace(name: str) -> Rule:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def ingress(mesh: ir.Mesh, service: ir.Service, monitoring: str | None) -> list[Rule]:
    # An empty `from` would admit everyone: a service nobody may call gets no inbound rule at all.
    sources = [{"podSelector": {"matchLabels": naming.service_selector(c.service)}}
               for c in service.allowed_callers if c.service is not None]
    sources += [{"podSelector": {"matchLabels": naming.gateway_selector(c.gateway)}}
                for c in service.allowed_callers if c.gateway is not None]
    sources += [_namespace(ns) for ns in sorted({c.identity.namespace for c in service.allowed_callers
                                                 if c.service is None and c.gateway is None})]
    rules = [{"from": sources, "ports": [_port(mesh.proxy.inbound_port)]}] if sources else []
    scrapers = _namespace(monitoring) if monitoring else {"namespaceSelector": {}}
    rules.append({"from": [scrapers], "ports": [_port(mesh.proxy.stats_port)]})
    return rules


def egress(mesh: ir.Mesh, service: ir.Service) -> list[Rule]:
    rules: list[Rule] = [{"to": [_namespace(DNS_NAMESPACE)], "ports": [_port(DNS_PORT, "UDP"), _port(DNS_PORT)]}]
    callees = [_service(mesh, name) for name in sorted({u.service for u in service.upstreams})]
    deployed = [callee.name for callee in callees if callee.deployed]
    if deployed:
        rules.append({"to": [{"podSelector": {"matchLabels": naming.service_selector(name)}} for name in deployed],
                      "ports": [_port(mesh.proxy.inbound_port)]})
    for callee in callees:
        if not callee.deployed:
            rules += _external(callee)
    return rules


def _service(mesh: ir.Mesh, name: str) -> ir.Service:
    """mesh.services is sorted by name: a binary search keeps a large mesh's build linear."""
    index = bisect.bisect_left(mesh.services, name, key=lambda s: s.name)
    return mesh.services[index]


def _external(callee: ir.Service) -> list[Rule]:
    rules: list[Rule] = []
    for endpoint in callee.endpoints:
        port = [_port(endpoint.port)]
        cidr = _cidr(endpoint.address)
        # A host name: its port, to any address.
        rules.append({"to": [{"ipBlock": {"cidr": cidr}}], "ports": port} if cidr else {"ports": port})
    return rules


@functools.lru_cache(maxsize=4096)
def _cidr(address: str) -> str | None:
    """`192.0.2.7/32` for an IP address (many callers share an external service); None for a name."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    return f"{parsed}/{parsed.max_prefixlen}"
