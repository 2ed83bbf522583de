"""meshc/kinds.py: the one apply-order table, importable by emitter and sync side alike."""

from __future__ import annotations

import ast
from pathlib import Path

from meshc import kinds

SOURCE = Path(kinds.__file__)


def test_apply_order_puts_dependencies_first() -> None:
    assert kinds.APPLY_ORDER == ("Namespace", "ServiceAccount", "Issuer", "Certificate", "ConfigMap", "Service",
                                 "NetworkPolicy", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget")
    assert kinds.PRUNE_ORDER == tuple(reversed(kinds.APPLY_ORDER))
    assert [kinds.kind_rank(k) for k in kinds.APPLY_ORDER] == list(range(len(kinds.APPLY_ORDER)))
    assert kinds.kind_rank("CronJob") == len(kinds.APPLY_ORDER)


def test_table_describes_each_kind_for_the_api() -> None:
    assert kinds.API_VERSIONS == {"Namespace": "v1", "ServiceAccount": "v1", "ConfigMap": "v1", "Service": "v1",
                                  "Deployment": "apps/v1", "Issuer": "cert-manager.io/v1",
                                  "Certificate": "cert-manager.io/v1", "NetworkPolicy": "networking.k8s.io/v1",
                                  "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1"}
    assert kinds.OPTIONAL_KINDS == {"Issuer", "Certificate"}   # CRDs: served only where cert-manager runs
    assert kinds.by_name("Deployment").plural == "deployments"
    assert not kinds.by_name("Namespace").namespaced
    assert all(kinds.by_name(k).namespaced for k in kinds.APPLY_ORDER[1:])


def test_in_apply_order_is_stable_within_a_kind() -> None:
    objects = [{"kind": "Deployment", "n": 1}, {"kind": "Service", "n": 2}, {"kind": "Deployment", "n": 3},
               {"kind": "Namespace", "n": 4}, {"kind": "Service", "n": 5}]
    assert [o["n"] for o in kinds.in_apply_order(objects)] == [4, 2, 5, 1, 3]


def test_sort_key_orders_by_kind_then_namespace_then_name() -> None:
    objects = [{"kind": "Service", "metadata": {"namespace": "b", "name": "x"}},
               {"kind": "Service", "metadata": {"namespace": "a", "name": "y"}},
               {"kind": "Namespace", "metadata": {"name": "z"}}]
    assert [o["metadata"]["name"] for o in sorted(objects, key=kinds.apply_sort_key)] == ["z", "y", "x"]


def test_kinds_is_neutral_ground() -> None:
    """Emitters and the sync side both import it, so it may import nothing of meshc."""
    tree = ast.parse(SOURCE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "meshc"}
