"""The Kubernetes kinds meshc manages and the one order they are applied in (pruned in reverse).

A neutral module: the Kubernetes emitter sorts each file's documents with it and the sync side
applies and prunes with it, without either importing the other. It imports nothing of meshc.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    group: str           # "" for the core API group
    version: str
    plural: str
    namespaced: bool
    # Served only where an add-on is installed (cert-manager): a cluster without it has none live.
    optional: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NAMESPACE = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
SERVICE_ACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts", namespaced=True)
CONFIG_MAP = Kind("ConfigMap", "", "v1", "configmaps", namespaced=True)
SERVICE = Kind("Service", "", "v1", "services", namespaced=True)
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", namespaced=True)
HORIZONTAL_POD_AUTOSCALER = Kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers",
                                 namespaced=True)
POD_DISRUPTION_BUDGET = Kind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", namespaced=True)
ISSUER = Kind("Issuer", "cert-manager.io", "v1", "issuers", namespaced=True, optional=True)
CERTIFICATE = Kind("Certificate", "cert-manager.io", "v1", "certificates", namespaced=True, optional=True)
NETWORK_POLICY = Kind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", namespaced=True)

# The table: a Namespace before what lives in it; a ServiceAccount and a ConfigMap before the
# Deployment that runs as one and mounts the other; Services before the pods they select. The
# Issuer before the Certificates it signs, and those before the pods that mount their Secrets;
# a NetworkPolicy before the pods it confines, so none runs unconfined even for a moment; an
# autoscaler and a disruption budget after the Deployment they scale and protect.
KINDS: tuple[Kind, ...] = (NAMESPACE, SERVICE_ACCOUNT, ISSUER, CERTIFICATE, CONFIG_MAP, SERVICE, NETWORK_POLICY,
                           DEPLOYMENT, HORIZONTAL_POD_AUTOSCALER, POD_DISRUPTION_BUDGET)

APPLY_ORDER: tuple[str, ...] = tuple(k.kind for k in KINDS)
PRUNE_ORDER: tuple[str, ...] = tuple(reversed(APPLY_ORDER))

# apiVersion of each managed kind, for lookups (discovery, listing) before any object is at hand
API_VERSIONS: Mapping[str, str] = {k.kind: k.api_version for k in KINDS}

OPTIONAL_KINDS: frozenset[str] = frozenset(k.kind for k in KINDS if k.optional)

_BY_NAME = {k.kind: k for k in KINDS}


def by_name(kind: str) -> Kind:
    """The table entry for a kind name such as "Deployment"; KeyError for a kind meshc does not manage."""
    return _BY_NAME[kind]


def kind_rank(kind: str) -> int:
    """Position of a kind in APPLY_ORDER; unknown kinds go last (applied after, pruned before)."""
    try:
        return APPLY_ORDER.index(kind)
    except ValueError:
        return len(APPLY_ORDER)


def apply_sort_key(obj: Mapping[str, Any]) -> tuple[int, str, str]:
    """Sort key for objects: kind in apply order, then namespace, then name."""
    metadata = obj.get("metadata") or {}
    return (kind_rank(str(obj.get("kind", ""))), str(metadata.get("namespace", "")), str(metadata.get("name", "")))


_Obj = TypeVar("_Obj", bound=Mapping[str, Any])


def in_apply_order(objects: Iterable[_Obj]) -> list[_Obj]:
    """Objects sorted by kind in apply order only; the given order is kept within a kind."""
    return sorted(objects, key=lambda obj: kind_rank(str(obj.get("kind", ""))))
