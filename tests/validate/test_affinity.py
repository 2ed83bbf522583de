"""pod.affinity is Kubernetes' Affinity: written to the pod template as given, and refused, at its
line, where the API server would refuse the Deployment."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from meshc.diagnostics import Diagnostic
from meshc.load import SpecSource
from meshc.pipeline import check
from tests.emit.kubernetes import schemas
from tests.emit.kubernetes.test_schemas import build, for_version

AFFINITY: dict[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
                                  {"key": "example.com/gpu", "operator": "DoesNotExist"},
                                  {"key": "example.com/cores", "operator": "Gt", "values": ["4"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]},
    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "cache"}},
         "namespaces": ["shop"]}]},
    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "podAffinityTerm": {
            "topologyKey": "topology.kubernetes.io/zone",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            "namespaceSelector": {}}}]},
}


def spec(affinity: Any) -> str:
    return f"""apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {{name: affinity}}
spec:
  services:
  - name: web
    image: example.com/web:1
    port: 8080
    pod:
      affinity: {json.dumps(affinity)}
"""


def diagnostics(affinity: Any) -> list[Diagnostic]:
    return check(SpecSource("mesh.yaml", spec(affinity).encode())).diagnostics


@pytest.mark.parametrize("version", schemas.oldest_and_newest())
def test_an_affinity_the_api_server_takes_is_written_as_given(version: str) -> None:
    objects = list(build(SpecSource("mesh.yaml", for_version(spec(AFFINITY), version).encode())).kubernetes_objects())
    assert [p for obj in objects for p in schemas.errors(obj, version)] == []
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["affinity"] == AFFINITY


def changed(path: str, value: Any) -> dict[str, Any]:
    """AFFINITY with the value at a dotted path (list indexes as numbers) replaced; None deletes it."""
    affinity = copy.deepcopy(AFFINITY)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target: Any = affinity
    for part in parents:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return affinity


NODE_TERMS = "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
ANTI = "podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.0"


@pytest.mark.parametrize(("path", "value", "code", "field"), [
    (f"{NODE_TERMS}.0.matchExpressions.0.values", None, "E717", "matchExpressions[0]"),         # In without values
    (f"{NODE_TERMS}.0.matchExpressions.1.values", ["x"], "E717", "matchExpressions[1].values"),  # DoesNotExist with
    (f"{NODE_TERMS}.0.matchExpressions.2.values", ["4", "8"], "E717", "matchExpressions[2].values"),   # Gt: one
    (f"{ANTI}.podAffinityTerm.labelSelector.matchExpressions.0.values", [], "E717", "matchExpressions[0].values"),
    (f"{ANTI}.podAffinityTerm", {"topologyKey": "zone", "matchLabelKeys": ["app"]},       # needs a labelSelector
     "E717", "podAffinityTerm.matchLabelKeys"),
    (f"{ANTI}.podAffinityTerm", {"topologyKey": "zone", "labelSelector": {}, "matchLabelKeys": ["a", "b"],
                                 "mismatchLabelKeys": ["b"]}, "E717", "matchLabelKeys[1]"),
    (f"{ANTI}.podAffinityTerm.matchLabelKeys", ["app"], "E717", "matchLabelKeys[0]"),  # in matchExpressions too
    ("podAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.matchLabelKeys", ["pod-template-hash", "app"],
     "E717", "matchLabelKeys[1]"),                                                       # in matchLabels too
    (NODE_TERMS, [], "E104", "nodeSelectorTerms"),
    (f"{NODE_TERMS}.1.matchFields.0.values", ["a", "b"], "E104", "matchFields[0].values"),
    (f"{NODE_TERMS}.1.matchFields.0.key", "metadata.labels", "E106", "matchFields[0].key"),
    (f"{NODE_TERMS}.0.matchExpressions.0.operator", "in", "E106", "matchExpressions[0].operator"),
    ("nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.weight", 101, "E104", "weight"),
    (f"{ANTI}.podAffinityTerm.topologyKey", None, "E102", "topologyKey"),
    (f"{ANTI}.podAffinityTerm.topologyKey", "", "E110", "topologyKey"),
    ("podAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.namespaces", ["Shop"], "E110", "namespaces[0]"),
    ("podAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.labelSelector.matchLabels",
     {"app": "not valid"}, "E110", "matchLabels.app"),
    ("podAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.topologykey", "zone", "E101", "topologykey"),
    ("nodeAffinity.requiredDuringSchedulingRequiredDuringExecution", {}, "E101", ""),
])
def test_what_the_api_server_refuses_is_reported_at_its_line(path: str, value: Any, code: str, field: str) -> None:
    found = diagnostics(changed(path, value))
    assert [d.code for d in found] == [code], [str(d) for d in found]
    assert found[0].span is not None and found[0].span.line >= 10
    assert field in found[0].message


def test_a_mismatch_label_key_may_be_in_the_label_selector_too() -> None:
    """The API server refuses a key in both matchLabelKeys and the labelSelector only: one in
    mismatchLabelKeys adds `NotIn` to a selector that may narrow that key further."""
    assert [str(d) for d in diagnostics(changed(f"{ANTI}.podAffinityTerm.mismatchLabelKeys", ["app"]))] == []
