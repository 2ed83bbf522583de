"""A PodDisruptionBudget (policy/v1) per version that has one: voluntary evictions (node drains,
cluster upgrades) then take down at most `maxUnavailable` of its pods at a time."""

from __future__ import annotations

from meshc import kinds
from meshc.emit import naming
from meshc.emit.kubernetes.objects import Object, new_object, with_config_hash
from meshc.resolve import ir


def disruption_budget(mesh: ir.Mesh, service: ir.Service, version: ir.Version, budget: ir.DisruptionBudget) -> Object:
    obj = new_object(kinds.POD_DISRUPTION_BUDGET, naming.workload_name(service.name, version), mesh.namespace,
                     naming.version_labels(mesh, service.name, version))
    spec: dict[str, object] = {"selector": {"matchLabels": naming.version_selector(service.name, version)}}
    if budget.min_available is not None:
        spec["minAvailable"] = budget.min_available
    if budget.max_unavailable is not None:
        spec["maxUnavailable"] = budget.max_unavailable
    obj["spec"] = spec
    return with_config_hash(obj)
