"""A HorizontalPodAutoscaler (autoscaling/v2) per version of an autoscaled service.

Its Deployment carries no `replicas` then: what meshc does not apply it never resets, so the
autoscaler's count survives every sync (docs/sync.md).
"""

from __future__ import annotations

from typing import Any

from meshc import kinds
from meshc.emit import naming
from meshc.emit.kubernetes.objects import Object, new_object, with_config_hash
from meshc.resolve import ir


def autoscaler(mesh: ir.Mesh, service: ir.Service, version: ir.Version, scaling: ir.Autoscaling) -> Object:
    name = naming.workload_name(service.name, version)
    obj = new_object(kinds.HORIZONTAL_POD_AUTOSCALER, name, mesh.namespace,
                     naming.version_labels(mesh, service.name, version))
    obj["spec"] = {
        "scaleTargetRef": {"apiVersion": kinds.DEPLOYMENT.api_version, "kind": kinds.DEPLOYMENT.kind, "name": name},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [_utilization(resource, target) for resource, target in
                    (("cpu", scaling.cpu_utilization), ("memory", scaling.memory_utilization)) if target is not None],
    }
    return with_config_hash(obj)


def _utilization(resource: str, percent: int) -> dict[str, Any]:
    """Percent of the pod's requests (every container's, the sidecar's included)."""
    return {"type": "Resource",
            "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": percent}}}
