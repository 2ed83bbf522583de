"""The resolved mesh seen in the spec's own terms, as subjects a reviewer recognizes.

A subject is the mesh itself, a service, a version, a static endpoint or a route (one `upstreams`
entry). Its values are spelled as mesh.yaml spells them (camelCase keys, `2s` durations), with
defaults applied, so that a change in `spec.defaults` shows on every route it reaches. Each subject
also knows where it sits in the document (its data path) and the spans the IR kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshc.diagnostics import Path, Span
from meshc.durations import format_duration as fmt
from meshc.resolve import ir

KIND_ORDER = {"mesh": 0, "service": 1, "version": 2, "endpoint": 3, "route": 4, "request-route": 5, "gateway": 6}


@dataclass(frozen=True, slots=True)
class Subject:
    key: tuple[str, ...]              # identity across revisions, e.g. ("version", "catalog", "v2")
    kind: str                         # mesh | service | version | endpoint | route
    title: str                        # "service catalog, version v2"
    service: str | None               # the service it belongs to (the caller, for a route)
    values: dict[str, Any]            # spec-shaped values with defaults applied
    span: Span                        # where the subject is written
    field_spans: dict[str, Span] = field(default_factory=dict)  # where an inherited top-level value is written

    def span_of(self, field_name: str) -> Span:
        return self.field_spans.get(field_name.split(".")[0], self.span)

    @property
    def sort_key(self) -> tuple[str, int, tuple[str, ...]]:
        return (self.service or "", KIND_ORDER[self.kind], self.key)


def subjects(mesh: ir.Mesh, only: Collection[str] | None = None) -> dict[tuple[str, ...], Subject]:
    """Every subject of the mesh; `only`: of these services alone (and the mesh and gateways)."""
    found = [_mesh_subject(mesh)]
    for service in mesh.services if only is None else (s for s in mesh.services if s.name in only):
        found.append(_service_subject(service))
        found += [_version_subject(service, v) for v in service.versions if not v.implicit]
        found += [_endpoint_subject(service, e) for e in service.endpoints]
        found += list(_route_subjects(service))
        found += list(request_route_subjects(service))
    found += [gateway_subject(g) for g in mesh.gateways]
    return {s.key: s for s in found}


# --- subjects -----------------------------------------------------------------------------

def _mesh_subject(mesh: ir.Mesh) -> Subject:
    proxy = mesh.proxy
    values = {
        "name": mesh.name,
        "namespace": mesh.namespace,
        "etcd": {"prefix": mesh.etcd_prefix},
        "proxy": {"image": proxy.image, "adminPort": proxy.admin_port, "inboundPort": proxy.inbound_port,
                  "statsPort": proxy.stats_port, "accessLog": proxy.access_log.value,
                  "resources": _resources(proxy.resources), "nativeSidecar": proxy.native_sidecar,
                  "drainDuration": fmt(proxy.drain_ms)},
        "security": _security(mesh.security),
        "analysis": {"maxRetryAmplification": mesh.analysis.max_retry_amplification,
                     "entryPoints": list(mesh.analysis.entry_points) if mesh.analysis.entry_points is not None
                     else None},
    }
    return Subject(("mesh",), "mesh", f"mesh {mesh.name}", None, values, mesh.span)


def _service_subject(service: ir.Service) -> Subject:
    values: dict[str, Any] = {
        "kind": "deployed" if service.deployed else "external (static endpoints)",
        "port": service.port,
        "protocol": service.protocol.value,
        "loadBalancer": load_balancer(service.load_balancing),
        "connectTimeout": fmt(service.connect_timeout_ms),
        "healthCheck": health_check(service.health_check),
        "outlierDetection": outlier_detection(service.outlier_detection),
        "circuitBreaker": circuit_breaker(service.circuit_breaker),
        "env": dict(service.env) or None,
    }
    implicit = [v for v in service.versions if v.implicit]
    if service.deployed:
        values["versions"] = "implicit (one)" if implicit else "declared"
    if implicit:  # image, replicas and resources sit on the service itself
        container = _container(implicit[0])
        if "env" in container:   # the variables read from a source join the literal ones
            container["env"] = (values["env"] or {}) | container["env"]
        values |= {"image": implicit[0].image, "replicas": implicit[0].replicas,
                   "resources": _resources(implicit[0].resources)} | container
    values |= _workload(service) | _zero_trust(service)
    spans = {"loadBalancer": service.load_balancing.span}
    for name, node in (("healthCheck", service.health_check), ("outlierDetection", service.outlier_detection),
                       ("circuitBreaker", service.circuit_breaker)):
        if node is not None:
            spans[name] = node.span
    return Subject(("service", service.name), "service", f"service {service.name}", service.name, values,
                   service.span, spans)


def _version_subject(service: ir.Service, version: ir.Version) -> Subject:
    values = {"image": version.image, "replicas": version.replicas, "weight": version.weight,
              "resources": _resources(version.resources)} | _container(version)
    return Subject(("version", service.name, version.name), "version",
                   f"service {service.name}, version {version.name}", service.name, values, version.span)


def _endpoint_subject(service: ir.Service, endpoint: ir.Endpoint) -> Subject:
    where = f"{endpoint.address}:{endpoint.port}"
    return Subject(("endpoint", service.name, where), "endpoint", f"service {service.name}, endpoint {where}",
                   service.name, {"weight": endpoint.weight}, endpoint.span)


def _route_subjects(service: ir.Service) -> Iterator[Subject]:
    seen: dict[str, int] = {}
    for upstream in service.upstreams:
        ordinal = seen.get(upstream.service, 0)
        seen[upstream.service] = ordinal + 1
        suffix = f" (#{ordinal + 1})" if ordinal else ""
        values = {
            "localPort": upstream.local_port,
            "timeout": fmt(upstream.timeout_ms),
            "failurePolicy": "fail_fast" if upstream.fail_fast else "retry",
            "retries": retries(upstream.retries),
        }
        spans = {"retries": upstream.retries.span} if upstream.retries else {}
        yield Subject(("route", service.name, upstream.service, str(ordinal)), "route",
                      f"route {service.name} -> {upstream.service}{suffix}", service.name, values,
                      upstream.span, spans)


# --- values in the spec's spelling ----------------------------------------------------------

def load_balancer(lb: ir.LoadBalancing) -> dict[str, Any]:
    key = lb.hash_key
    hash_on: dict[str, Any] | None = None if key is None else (
        {"header": key.header} if key.header else {"sourceIp": True})
    if key is not None and key.cookie is not None:
        hash_on = {"cookie": {"name": key.cookie.name, "ttl": fmt(key.cookie.ttl_ms) if key.cookie.ttl_ms else None,
                              "path": key.cookie.path}}
    elif key is not None and key.query_parameter is not None:
        hash_on = {"queryParameter": key.query_parameter}
    return {"policy": lb.policy.value, "hashOn": hash_on}


def health_check(check: ir.HealthCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {"path": check.path, "interval": fmt(check.interval_ms), "timeout": fmt(check.timeout_ms),
            "healthyThreshold": check.healthy_threshold, "unhealthyThreshold": check.unhealthy_threshold}


def outlier_detection(outlier: ir.OutlierDetection | None) -> dict[str, Any] | None:
    if outlier is None:
        return None
    return {"consecutive5xx": outlier.consecutive_5xx, "consecutiveGatewayFailure": outlier.consecutive_gateway_failure,
            "interval": fmt(outlier.interval_ms), "baseEjectionTime": fmt(outlier.base_ejection_time_ms),
            "maxEjectionPercent": outlier.max_ejection_percent}


def circuit_breaker(circuit: ir.CircuitBreaker | None) -> dict[str, Any] | None:
    if circuit is None:
        return None
    return {"maxConnections": circuit.max_connections, "maxPendingRequests": circuit.max_pending_requests,
            "maxRequests": circuit.max_requests, "maxRetries": circuit.max_retries}


def retries(policy: ir.RetryPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    backoff = policy.backoff
    return {
        "attempts": policy.attempts,
        "perTryTimeout": fmt(policy.per_try_timeout_ms) if policy.per_try_timeout_ms else None,
        "retryOn": list(policy.retry_on),
        "backoff": None if backoff is None else {"baseInterval": fmt(backoff.base_interval_ms),
                                                 "maxInterval": fmt(backoff.max_interval_ms)},
    }


# --- request routes and gateways -----------------------------------------------------------

def request_route_subjects(service: ir.Service) -> Iterator[Subject]:
    """A service's routes, by name (or position), in the spec's spelling."""
    for route in service.routes:
        label = route.name or f"#{route.index + 1}"
        yield Subject(("request-route", service.name, label, str(route.index)), "request-route",
                      f"service {service.name}, route {label}", service.name, request_route(route), route.span)


def request_route(route: ir.Route) -> dict[str, Any]:
    values: dict[str, Any] = {"position": route.index + 1, "match": match_text(route.match) or "every request"}
    if route.versions:
        values["versions"] = {v.name: v.weight for v in route.versions}
    if route.timeout_ms is not None:
        values["timeout"] = fmt(route.timeout_ms)
    if route.fault is not None:
        values["fault"] = fault_text(route.fault)
    if route.mirror is not None:
        target = route.mirror.service + (f" {route.mirror.version}" if route.mirror.version else "")
        values["mirror"] = f"{target} {route.mirror.percent:g}%"
    if route.prefix_rewrite is not None:
        values["rewrite"] = {"prefix": route.prefix_rewrite}
    for side, changes in (("request", route.request_headers), ("response", route.response_headers)):
        if changes.set or changes.remove:
            values[f"{side}Headers"] = {"set": dict(changes.set), "remove": list(changes.remove)}
    return values


def match_text(match: ir.RouteMatch) -> str:
    """`path prefix /api, header end-user exact jason, GET, from productpage` (empty: everything)."""
    parts = [f"path {match.path.kind} {match.path.value}"] if match.path else []
    parts += [f"header {h.name} {_condition(h.match)}" for h in match.headers]
    parts += [f"query {q.name} {_condition(q.match)}" for q in match.query]
    parts += ["|".join(match.methods)] if match.methods else []
    parts += [f"from {', '.join(match.callers)}"] if match.callers is not None else []
    return ", ".join(parts)


def _condition(condition: ir.StringMatch) -> str:
    return condition.kind if condition.value is None else f"{condition.kind} {condition.value}"


def fault_text(fault: ir.Fault) -> str:
    parts = []
    if fault.delay_ms is not None:
        parts.append(f"delay {fmt(fault.delay_ms)} {fault.delay_percent:g}%")
    status = fault.abort_status if fault.abort_status is not None else (
        f"grpc {fault.abort_grpc_status}" if fault.abort_grpc_status is not None else None)
    if status is not None:
        parts.append(f"abort {status} {fault.abort_percent:g}%")
    return ", ".join(parts)


def gateway_subject(gateway: ir.Gateway) -> Subject:
    values = {
        "replicas": gateway.replicas,
        "listeners": [{"port": li.port, "hosts": list(li.hosts), "tls": li.tls_secret,
                       "redirectToHttps": li.redirect_to_https} for li in gateway.listeners],
        "routes": [gateway_route_text(r) for r in gateway.routes],
    }
    return Subject(("gateway", gateway.name), "gateway", f"gateway {gateway.name}", None, values, gateway.span)


def gateway_route_text(route: ir.GatewayRoute) -> str:
    where = (route.host or "*") + (f" {route.path.kind} {route.path.value}" if route.path else "")
    return f"{where} -> {route.service}"


def _resources(resources: ir.Resources) -> dict[str, Any]:
    return {"requests": {"cpu": resources.cpu_request, "memory": resources.memory_request,
                         "ephemeral-storage": resources.storage_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit,
                       "ephemeral-storage": resources.storage_limit}}


# --- workloads and zero trust, in the spec's spelling ----------------------------------------
# Only what a service sets (or what its defaults give it) is listed, so that a service which sets
# none of them reads as before; a value set or unset shows as a change from or to nothing.

# Fields of a version's app container: on the service itself while its one version is implicit.
CONTAINER_FIELDS = ("command", "args", "autoscaling", "disruptionBudget")


def _container(version: ir.Version) -> dict[str, Any]:
    """The app container's own settings: command, args, scaling, and the env variables read from
    a Secret, a ConfigMap or a pod field (the service's literal env is the service's own field;
    upstream addresses follow from its routes)."""
    values: dict[str, Any] = {
        "command": list(version.command) if version.command is not None else None,
        "args": list(version.args) if version.args is not None else None,
        "env": {var.name: env_source(var.source) for var in version.env if var.source is not None} or None,
        "autoscaling": None if version.autoscaling is None else _autoscaling(version.autoscaling),
        "disruptionBudget": None if version.disruption_budget is None else {
            "minAvailable": version.disruption_budget.min_available,
            "maxUnavailable": version.disruption_budget.max_unavailable},
    }
    return {key: value for key, value in values.items() if value is not None}


def env_source(source: ir.EnvSource) -> str:
    """`secretKeyRef db/password (optional)`, `fieldRef status.podIP`."""
    where = source.key if source.name is None else f"{source.name}/{source.key}"
    return f"{source.kind} {where}" + (" (optional)" if source.optional else "")


def _autoscaling(scaling: ir.Autoscaling) -> dict[str, Any]:
    return {"minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
            "targetCPUUtilization": scaling.cpu_utilization, "targetMemoryUtilization": scaling.memory_utilization}


def _workload(service: ir.Service) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if service.service_port is not None and service.service_port != service.port:
        values["servicePort"] = service.service_port
    if service.volumes:
        values["volumes"] = {v.name: _volume(v) for v in service.volumes}
    if service.security != ir.DEFAULT_APP_SECURITY:
        values["securityContext"] = _security_context(service.security)
    if service.init_containers:
        values["initContainers"] = {c.name: _init_container(c) for c in service.init_containers}
    if service.probes != ir.NO_PROBES:
        values["probes"] = {name: _probe(choice) for name, choice in (
            ("liveness", service.probes.liveness), ("readiness", service.probes.readiness),
            ("startup", service.probes.startup))}
    if service.pod != ir.NO_POD_SETTINGS:
        values["pod"] = _pod(service.pod)
    if service.rate_limit is not None:
        limit = service.rate_limit
        values["rateLimit"] = {"requests": limit.requests, "per": fmt(limit.per_ms), "burst": limit.burst}
    return values


def _volume(volume: ir.Volume) -> dict[str, Any]:
    values: dict[str, Any] = {"mountPath": volume.mount_path, "readOnly": volume.read_only}
    if volume.kind == "emptyDir":
        values["emptyDir"] = {"sizeLimit": volume.size_limit, "medium": volume.medium}
    else:
        source_key = "claimName" if volume.kind == "persistentVolumeClaim" else "name"
        values[volume.kind] = {source_key: volume.source, "items": dict(volume.items) or None,
                               "optional": volume.optional}
    return values


def _security_context(security: ir.AppSecurity) -> dict[str, Any]:
    return {"runAsUser": security.run_as_user, "runAsGroup": security.run_as_group, "fsGroup": security.fs_group,
            "readOnlyRootFilesystem": security.read_only_root_filesystem,
            "capabilities": {"add": list(security.added_capabilities)}}


def _init_container(container: ir.InitContainer) -> dict[str, Any]:
    return {"image": container.image,
            "command": list(container.command) if container.command is not None else None,
            "args": list(container.args) if container.args is not None else None,
            "env": {var.name: var.value if var.source is None else env_source(var.source)
                    for var in container.env} or None,
            "resources": _resources(container.resources)}


def _probe(choice: ir.ProbeChoice) -> dict[str, Any] | str | None:
    """A probe as the spec sets it; `off`; or None (meshc's default for it)."""
    if choice is None or isinstance(choice, str):
        return choice
    action: dict[str, Any] = {"port": choice.port}
    if choice.handler == "httpGet":
        action |= {"path": choice.path, "scheme": choice.scheme, "headers": dict(choice.headers) or None}
    elif choice.handler == "grpc":
        action["service"] = choice.grpc_service
    elif choice.handler == "exec":
        action = {"command": list(choice.command)}
    return {choice.handler: action, "initialDelaySeconds": choice.initial_delay_s,
            "periodSeconds": choice.period_s, "timeoutSeconds": choice.timeout_s,
            "successThreshold": choice.success_threshold, "failureThreshold": choice.failure_threshold}


def _pod(pod: ir.PodSettings) -> dict[str, Any]:
    return {
        "labels": dict(pod.labels) or None,
        "annotations": dict(pod.annotations) or None,
        "nodeSelector": dict(pod.node_selector) or None,
        "tolerations": [{"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect,
                         "tolerationSeconds": t.seconds} for t in pod.tolerations] or None,
        "affinity": pod.affinity_json,
        "topologySpreadConstraints": [{"maxSkew": t.max_skew, "topologyKey": t.topology_key,
                                       "whenUnsatisfiable": t.when_unsatisfiable, "minDomains": t.min_domains}
                                      for t in pod.topology_spread] or None,
        "priorityClassName": pod.priority_class_name,
        "imagePullSecrets": list(pod.image_pull_secrets) or None,
        "terminationGracePeriodSeconds": pod.termination_grace_period_s,
    }


def _zero_trust(service: ir.Service) -> dict[str, Any]:
    """TLS towards an external service. Who may call a service, and its mTLS mode, are the access
    section's (meshc.review.access), not repeated here."""
    if service.external_tls is None:
        return {}
    tls = service.external_tls
    return {"tls": {"sni": tls.sni, "caBundle": tls.ca_bundle or "system", "hostRewrite": tls.host_rewrite}}


def _security(security: ir.Security | None) -> dict[str, Any] | None:
    if security is None:
        return None
    certificates = security.certificates
    return {"mtls": security.mtls.value, "trustDomain": security.trust_domain,
            "certificates": {"issuerRef": None if certificates.emit_issuer else
                             {"kind": certificates.issuer_kind, "name": certificates.issuer_name},
                             "duration": fmt(certificates.duration_ms), "renewBefore": fmt(certificates.renew_before_ms)},
            "networkPolicies": security.network_policies, "monitoringNamespace": security.monitoring_namespace}


# --- where a subject is written ---------------------------------------------------------------

def data_path(data: Any, subject: Subject) -> Path | None:
    """The subject's path in the loaded document, so a changed field can be located to its key."""
    if subject.kind == "mesh":
        return ("spec",)
    if subject.kind == "gateway":
        gateways = data.get("spec", {}).get("gateways", []) if isinstance(data, Mapping) else []
        for position, entry in enumerate(gateways if isinstance(gateways, list) else []):
            if isinstance(entry, Mapping) and entry.get("name") == subject.key[1]:
                return ("spec", "gateways", position)
        return None
    index = _service_index(data, subject.service or "")
    if index is None:
        return None
    base: Path = ("spec", "services", index)
    if subject.kind == "service":
        return base
    entry = data["spec"]["services"][index]
    if subject.kind == "version":
        return _list_path(base, "versions", entry, lambda v: v.get("name") == subject.key[2])
    if subject.kind == "endpoint":
        return _list_path(base, "endpoints", entry, lambda e: f"{e.get('address')}:{e.get('port')}" == subject.key[2])
    if subject.kind == "request-route":
        routes = _entries(entry, "routes")
        return base + ("routes", int(subject.key[3])) if int(subject.key[3]) < len(routes) else None
    callee, ordinal = subject.key[2], int(subject.key[3])
    matches = [i for i, u in enumerate(_entries(entry, "upstreams")) if u.get("service") == callee]
    return base + ("upstreams", matches[ordinal]) if ordinal < len(matches) else None


def _service_index(data: Any, name: str) -> int | None:
    services = data.get("spec", {}).get("services", []) if isinstance(data, Mapping) else []
    for index, entry in enumerate(services if isinstance(services, list) else []):
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return index
    return None


def _entries(entry: Any, key: str) -> list[Mapping[str, Any]]:
    items = entry.get(key) if isinstance(entry, Mapping) else None
    return [i if isinstance(i, Mapping) else {} for i in items] if isinstance(items, list) else []


def _list_path(base: Path, key: str, entry: Any, match: Any) -> Path | None:
    for index, item in enumerate(_entries(entry, key)):
        if match(item):
            return base + (key, index)
    return None
