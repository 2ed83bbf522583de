"""The Kubernetes kinds meshc manages, in apply order: the ONE table both the emitter and sync use.

Apply walks the table top to bottom (a Namespace before what lives in it, a ServiceAccount and a
ConfigMap before the Deployment that mounts or runs as them); prune walks it bottom to top.
This module is neutral ground: it imports nothing from meshc's stages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    group: str           # "" for the core API group
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NAMESPACE = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
SERVICE_ACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts", namespaced=True)
CONFIG_MAP = Kind("ConfigMap", "", "v1", "configmaps", namespaced=True)
SERVICE = Kind("Service", "", "v1", "services", namespaced=True)
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", namespaced=True)

APPLY_ORDER: tuple[Kind, ...] = (NAMESPACE, SERVICE_ACCOUNT, CONFIG_MAP, SERVICE, DEPLOYMENT)
PRUNE_ORDER: tuple[Kind, ...] = tuple(reversed(APPLY_ORDER))

_RANK = {k.kind: rank for rank, k in enumerate(APPLY_ORDER)}
_BY_NAME = {k.kind: k for k in APPLY_ORDER}


def by_name(kind: str) -> Kind:
    """The table entry for a kind name such as "Deployment"; KeyError for a kind meshc does not manage."""
    return _BY_NAME[kind]


def apply_rank(kind: str) -> int:
    """Position of a kind in apply order (0 first); KeyError for a kind meshc does not manage."""
    return _RANK[kind]


def in_apply_order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Objects (Kubernetes-shaped mappings) sorted by kind in apply order; stable within a kind."""
    return sorted(objects, key=lambda obj: _RANK[obj["kind"]])
