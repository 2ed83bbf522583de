"""Readiness and liveness probes of the app container and the Envoy sidecar.

Readiness follows the service's health check (the same one callers' Envoys use), so Kubernetes and
the mesh agree on which pods take traffic. Liveness is deliberately weaker, "the process accepts
connections": a liveness probe on the readiness endpoint restarts every pod at once when a shared
dependency fails, which turns an outage into a longer one.
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


def seconds(millis: int) -> int:
    """Probe fields are whole seconds, at least 1: round up so a probe is never stricter than asked."""
    return max(1, -(-millis // 1000))


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


def sidecar_liveness(proxy: ir.Proxy) -> Probe:
    return {"tcpSocket": {"port": proxy.stats_port}, "initialDelaySeconds": _LIVENESS_DELAY_S,
            "periodSeconds": _LIVENESS_PERIOD_S, "timeoutSeconds": _READINESS_TIMEOUT_S,
            "failureThreshold": _LIVENESS_FAILURES}
