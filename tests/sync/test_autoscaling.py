"""An autoscaled service against the API server double: the autoscaler's replica count is its own.

meshc leaves `replicas` out of an autoscaled Deployment. Server-side apply then neither sets nor
removes the field, so a count the HorizontalPodAutoscaler set survives a no-op sync (which makes
no writes at all), a sync that rewrites the Deployment (a new image), and drift detection.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from meshc.sync.engine import sync_once
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Action
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.sync.specs import NAMESPACE, bundle_of, chain_spec, service_name

pytestmark = pytest.mark.timeout(120)

AUTOSCALER_MANAGER = "kube-controller-manager"   # the HPA controller's field manager in a real cluster
SCALED = service_name(0)


def autoscaled_spec(image: str = "1.0") -> dict[str, Any]:
    spec = chain_spec(2, images={SCALED: f"registry.example/{SCALED}:{image}"})
    entry = spec["spec"]["services"][0]
    del entry["replicas"]
    entry["autoscaling"] = {"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilization": 60}
    return spec


def autoscaler_scales_to(kube_api: KubeAPIHandle, replicas: int) -> None:
    """What the HPA controller does: set the Deployment's replicas, as its own field manager."""
    client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
        SCALED, NAMESPACE, {"spec": {"replicas": replicas}}, field_manager=AUTOSCALER_MANAGER)


def live_replicas(kube_api: KubeAPIHandle) -> int:
    deployment = kube_api.store_get("deployments", SCALED, NAMESPACE)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def test_the_bundle_has_an_autoscaler_and_a_deployment_without_replicas() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in bundle_of(autoscaled_spec()).kubernetes_objects()}
    assert "replicas" not in objects[("Deployment", SCALED)]["spec"]
    hpa = objects[("HorizontalPodAutoscaler", SCALED)]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": SCALED}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert objects[("PodDisruptionBudget", SCALED)]["spec"]["maxUnavailable"] == 1
    assert objects[("Deployment", service_name(1))]["spec"]["replicas"] == 1   # not autoscaled: meshc's count


def test_autoscaler_and_budget_are_applied_and_pruned(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(autoscaled_spec()), [kube_target])
    assert kube_api.store_get("horizontalpodautoscalers", SCALED, NAMESPACE) is not None
    assert kube_api.store_get("poddisruptionbudgets", SCALED, NAMESPACE) is not None

    fixed = chain_spec(2)     # autoscaling dropped: meshc sets replicas again, and prunes the HPA
    report = sync_once(bundle_of(fixed), [kube_target])
    assert kube_api.store_get("horizontalpodautoscalers", SCALED, NAMESPACE) is None
    assert kube_api.store_get("poddisruptionbudgets", SCALED, NAMESPACE) is None
    assert live_replicas(kube_api) == 1
    deleted = {c.key for c in report.plans[0].changes if c.action is Action.DELETE}
    assert deleted == {f"autoscaling/v2 HorizontalPodAutoscaler {NAMESPACE}/{SCALED}",
                       f"policy/v1 PodDisruptionBudget {NAMESPACE}/{SCALED}"}


def test_the_autoscalers_replica_count_survives_every_sync(kube_api: KubeAPIHandle,
                                                           kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(autoscaled_spec()), [kube_target])
    autoscaler_scales_to(kube_api, 7)
    assert live_replicas(kube_api) == 7

    # a no-op sync: nothing written, nothing reported as drift
    kube_api.reset_log()
    report = sync_once(bundle_of(autoscaled_spec(), revision="b" * 40), [kube_target])
    assert kube_api.writes() == [] and report.write_requests == 0
    assert {c.action for c in report.plans[0].changes} == {Action.UNCHANGED}
    assert live_replicas(kube_api) == 7

    # a sync that rewrites the Deployment (new image) applies it without touching the count
    kube_api.reset_log()
    sync_once(bundle_of(autoscaled_spec(image="1.1")), [kube_target])
    written = {w.path.rsplit("/", 1)[1] for w in kube_api.writes()}
    assert written == {SCALED}
    assert live_replicas(kube_api) == 7
    deployment = kube_api.store_get("deployments", SCALED, NAMESPACE)
    assert deployment is not None
    app = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app")
    assert app["image"] == f"registry.example/{SCALED}:1.1"
    owners = {entry["manager"] for entry in deployment["metadata"]["managedFields"]
              if "f:replicas" in str(entry.get("fieldsV1", {}))}
    assert owners == {AUTOSCALER_MANAGER}

    # later scaling goes on being the autoscaler's
    autoscaler_scales_to(kube_api, 3)
    kube_api.reset_log()
    sync_once(bundle_of(autoscaled_spec(image="1.1"), revision="c" * 40), [kube_target])
    assert kube_api.writes() == [] and live_replicas(kube_api) == 3


def test_turning_autoscaling_on_keeps_the_running_replica_count(kube_api: KubeAPIHandle,
                                                               kube_target: KubernetesTarget) -> None:
    """meshc owned `replicas` until now; applying without it must not reset a running Deployment to
    one pod before the autoscaler acts (server-side apply removes a field its only owner drops)."""
    sync_once(bundle_of(chain_spec(2, replicas={SCALED: 4})), [kube_target])
    assert live_replicas(kube_api) == 4
    sync_once(bundle_of(autoscaled_spec()), [kube_target])
    assert live_replicas(kube_api) == 4
    autoscaler_scales_to(kube_api, 5)
    sync_once(bundle_of(autoscaled_spec(image="1.2")), [kube_target])
    assert live_replicas(kube_api) == 5
