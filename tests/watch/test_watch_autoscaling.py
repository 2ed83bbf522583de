"""The sync loop never reverts an autoscaler: drift passes and new commits leave its replica count."""

from __future__ import annotations

from kubernetes import client

from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.gitrepo import GitRepo
from tests.watch.harness import watching
from tests.watch.specs import NAMESPACE, SPEC_PATH, mesh_spec

SCALED = "svc-00"
AUTOSCALING = "    autoscaling: {minReplicas: 2, maxReplicas: 10}\n"


def autoscaled_spec(tags: dict[str, str] | None = None) -> str:
    """The watch tests' mesh with svc-00 (the first service) autoscaled: its `replicas` line
    replaced by `autoscaling`."""
    return mesh_spec(3, tags=tags).replace("    replicas: 1\n", AUTOSCALING, 1)


def live_replicas(kube_api: KubeAPIHandle) -> int:
    deployment = kube_api.store_get("deployments", SCALED, NAMESPACE)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def test_watch_keeps_the_autoscalers_replica_count(git_repo: GitRepo, kube_api: KubeAPIHandle,
                                                   kube_target: KubernetesTarget) -> None:
    assert AUTOSCALING in autoscaled_spec()
    first = git_repo.commit_file(SPEC_PATH, autoscaled_spec(), "An autoscaled svc-00")
    with watching(git_repo.path, [kube_target]) as watcher:
        watcher.wait("applied", commit=first)
        assert kube_api.store_get("horizontalpodautoscalers", SCALED, NAMESPACE) is not None
        client.AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
            SCALED, NAMESPACE, {"spec": {"replicas": 6}}, field_manager="kube-controller-manager")
        kube_api.reset_log()
        watcher.wait_passes(4)            # drift passes over the scaled Deployment
        assert kube_api.writes() == []
        other = git_repo.commit_file(SPEC_PATH, autoscaled_spec(tags={"svc-01": "1.0.1"}), "Bump svc-01")
        watcher.wait("applied", commit=other)
        watcher.wait_passes(2)
    written = {w.path.rsplit("/", 1)[1] for w in kube_api.writes()}
    assert written == {"svc-01"}
    assert live_replicas(kube_api) == 6
