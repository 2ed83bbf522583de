"""Readiness and liveness probes of the app container and the Envoy sidecar.

Readiness follows the service's health check (the same one callers' Envoys use), so Kubernetes and
the mesh agree on which pods take traffic. Liveness is deliberately weaker, "the process accepts
connections": a liveness probe on the readiness endpoint restarts every pod at once when a shared
dependency fails, which turns an outage into a longer one.

A service's `probes` replace these defaults one by one (`off` removes one); a client-only service
(no port) has no default probes at all: nothing listens that a probe could ask.
"""

from __future__ import annotations

from typing import Any

from meshc.emit import naming
from meshc.resolve import ir

Probe = dict[str, Any]

# Without a health check the app is ready once its port accepts connections.
_READINESS_PERIOD_S = 5
_READINESS_TIMEOUT_S = 1
_READINESS_FAILURES = 3
# Liveness: first restart no sooner than ~45 s after start, and 30 s of silence after that.
_LIVENESS_DELAY_S = 15
_LIVENESS_PERIOD_S = 10
_LIVENESS_FAILURES = 3
# The sidecar is ready in well under a second; poll often so pods join quickly.
_SIDECAR_READINESS_PERIOD_S = 2
# A native sidecar's startup probe: every second, for up to two minutes (image pull is not counted).
_SIDECAR_STARTUP_FAILURES = 120


def seconds(millis: int) -> int:
    """Probe fields are whole seconds, at least 1: round up so a probe is never stricter than asked."""
    return max(1, -(-millis // 1000))


def app_probes(service: ir.Service) -> dict[str, Probe]:
    """readinessProbe, livenessProbe and startupProbe of the app container, where there is one."""
    if service.probes is ir.NO_PROBES:
        if service.port is None:
            return {}
        return {"readinessProbe": app_readiness(service), "livenessProbe": app_liveness(service)}
    defaults = {"readinessProbe": app_readiness, "livenessProbe": app_liveness}
    found: dict[str, Probe] = {}
    for field, choice in (("readinessProbe", service.probes.readiness), ("livenessProbe", service.probes.liveness),
                          ("startupProbe", service.probes.startup)):
        if isinstance(choice, ir.Probe):
            found[field] = spec_probe(choice, service.port, liveness=field != "readinessProbe")
        elif choice is None and service.port is not None and field in defaults:
            found[field] = defaults[field](service)
    return found


def spec_probe(probe: ir.Probe, app_port: int | None, liveness: bool) -> Probe:
    """A probe the spec states, in Kubernetes' shape; an unset port is the app's (checked to exist)."""
    port = probe.port if probe.port is not None else app_port
    handler: Probe
    if probe.handler == "exec":
        handler = {"exec": {"command": list(probe.command)}}
    elif probe.handler == "grpc":
        handler = {"grpc": {"port": port, **({"service": probe.grpc_service} if probe.grpc_service else {})}}
    elif probe.handler == "httpGet":
        get: Probe = {"path": probe.path, "port": port}
        if probe.scheme is not None:
            get["scheme"] = probe.scheme
        if probe.headers:
            get["httpHeaders"] = [{"name": name, "value": value} for name, value in probe.headers]
        handler = {"httpGet": get}
    else:
        handler = {"tcpSocket": {"port": port}}
    timing = {"initialDelaySeconds": probe.initial_delay_s, "periodSeconds": probe.period_s,
              "timeoutSeconds": probe.timeout_s, "failureThreshold": probe.failure_threshold,
              # Kubernetes demands 1 for liveness and startup probes: leave it to its default there
              "successThreshold": None if liveness else probe.success_threshold}
    return {**handler, **{key: value for key, value in timing.items() if value is not None}}


def app_readiness(service: ir.Service) -> Probe:
    check = service.health_check
    if check is None:
        return {"tcpSocket": {"port": service.port}, "periodSeconds": _READINESS_PERIOD_S,
                "timeoutSeconds": _READINESS_TIMEOUT_S, "failureThreshold": _READINESS_FAILURES}
    return {
        **_app_handler(service, check),
        "periodSeconds": seconds(check.interval_ms),
        "timeoutSeconds": seconds(check.timeout_ms),
        "successThreshold": check.healthy_threshold,
        "failureThreshold": check.unhealthy_threshold,
    }


def _app_handler(service: ir.Service, check: ir.HealthCheck) -> Probe:
    if service.protocol is ir.Protocol.GRPC:
        # The kubelet calls grpc.health.v1.Health/Check for the server as a whole.
        return {"grpc": {"port": service.port}}
    if service.protocol is ir.Protocol.TCP:
        return {"tcpSocket": {"port": service.port}}
    return {"httpGet": {"path": check.path, "port": service.port}}


def app_liveness(service: ir.Service) -> Probe:
    timeout = seconds(service.health_check.timeout_ms) if service.health_check else _READINESS_TIMEOUT_S
    return {"tcpSocket": {"port": service.port}, "initialDelaySeconds": _LIVENESS_DELAY_S,
            "periodSeconds": _LIVENESS_PERIOD_S, "timeoutSeconds": timeout, "failureThreshold": _LIVENESS_FAILURES}


def sidecar_readiness(proxy: ir.Proxy) -> Probe:
    """Envoy answers /ready with 200 once it is initialised (clusters and listeners loaded)."""
    return {"httpGet": {"path": naming.SIDECAR_READY_PATH, "port": proxy.stats_port},
            "periodSeconds": _SIDECAR_READINESS_PERIOD_S, "timeoutSeconds": _READINESS_TIMEOUT_S,
            "failureThreshold": _READINESS_FAILURES}


def sidecar_startup(proxy: ir.Proxy) -> Probe:
    """A native sidecar is "started" once this passes; only then does the kubelet start the app."""
    return {"httpGet": {"path": naming.SIDECAR_READY_PATH, "port": proxy.stats_port},
            "periodSeconds": 1, "timeoutSeconds": _READINESS_TIMEOUT_S, "failureThreshold": _SIDECAR_STARTUP_FAILURES}


def sidecar_liveness(proxy: ir.Proxy) -> Probe:
    return {"tcpSocket": {"port": proxy.stats_port}, "initialDelaySeconds": _LIVENESS_DELAY_S,
            "periodSeconds": _LIVENESS_PERIOD_S, "timeoutSeconds": _READINESS_TIMEOUT_S,
            "failureThreshold": _LIVENESS_FAILURES}
