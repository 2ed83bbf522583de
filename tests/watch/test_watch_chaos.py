"""The loop under faults that land at moments the other fault tests do not pick: etcd killed while
the Kubernetes writes of a sync are under way, API failures (5xx, 409, cut answers, timeouts) at
random requests over several commits, and the branch moving (forward, or rewritten) while a sync
of its previous head is being applied. In every case: transient failures are retried, no target
is left holding a mix of two commits, and the targets converge on the branch's last commit."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.watch.harness import matching, watching
from tests.watch.specs import NAMESPACE, PREFIX, SPEC_PATH, mesh_spec, service_name
from tests.watch.test_watch_loop import deployment_image, etcd_value

pytestmark = pytest.mark.timeout(180)
BACKOFF_CAP = 0.5
SERVICES = 3


def images(kube_api: KubeAPIHandle) -> dict[str, str]:
    return {service_name(i): deployment_image(kube_api, service_name(i)) for i in range(SERVICES)}


def tagged(tag: str) -> dict[str, str]:
    return {service_name(i): tag for i in range(SERVICES)}


def expected_images(tag: str) -> dict[str, str]:
    return {name: f"ghcr.io/acme/{name}:{tag}" for name in tagged(tag)}


@contextmanager
def deployment_write_held(kube_api: KubeAPIHandle, repo: GitRepo, tag: str, message: str) -> Iterator[str]:
    """Commit every service at `tag` and hold the watcher's first Deployment write of that commit
    until the block ends (the sync is then half-way through its Kubernetes writes); yields the commit."""
    held = kube_api.hold_next(methods={"PATCH"}, path_contains="/deployments/")
    change = repo.commit_file(SPEC_PATH, mesh_spec(SERVICES, tags=tagged(tag)), message)
    try:
        assert held.reached.wait(60), "the sync of the new commit never wrote a Deployment"
        yield change
    finally:
        held.release()


def test_etcd_killed_while_kubernetes_is_written_leaves_etcd_on_the_old_commit_then_converges(
        mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget, etcd_server: EtcdServer,
        etcd_target: EtcdTarget) -> None:
    with watching(mesh_repo.path, [kube_target, etcd_target], backoff_cap=BACKOFF_CAP) as watcher:
        first = watcher.wait("applied", commit=mesh_repo.head_sha)["commit"]
        with deployment_write_held(kube_api, mesh_repo, "2.0.0", "Bump every service") as change:
            etcd_server.kill()   # SIGKILL, mid-apply: plans are made, Kubernetes is being written
        watcher.wait("failed", commit=change, attempt=2)
        failures = matching(watcher.events(), "failed", commit=change)
    # Kubernetes took the commit; etcd, killed before its transaction, holds the old one whole
    # (looked at with the watcher stopped, so that no retry races the reads).
    assert failures and all(f["transient"] for f in failures)
    assert all(0 < f["retry_in_s"] <= BACKOFF_CAP for f in failures)
    assert images(kube_api) == expected_images("2.0.0")
    etcd_server.start()
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == first
    assert '"ghcr.io/acme/svc-01:1.0.0"' in (etcd_value(etcd_server, f"{PREFIX}/services/svc-01") or "")

    with watching(mesh_repo.path, [kube_target, etcd_target], backoff_cap=BACKOFF_CAP) as watcher:
        watcher.wait("applied", commit=change)
    assert images(kube_api) == expected_images("2.0.0")
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change
    assert '"ghcr.io/acme/svc-01:2.0.0"' in (etcd_value(etcd_server, f"{PREFIX}/services/svc-01") or "")


@pytest.mark.parametrize("seed", [11, 29])
def test_api_failures_at_random_requests_over_several_commits_converge(
        seed: int, mesh_repo: GitRepo, kube_api: KubeAPIHandle, etcd_server: EtcdServer,
        etcd_target: EtcdTarget) -> None:
    """Each commit meets a random mix of 500/503/409/429 answers, answers cut off (before or after
    the server acted) and requests slower than the client's timeout, on random methods and kinds."""
    rng = random.Random(seed)
    kube = KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig), request_timeout=1.0)
    kinds = [None, "/deployments", "/services", "/configmaps", "/serviceaccounts"]
    try:
        with watching(mesh_repo.path, [kube, etcd_target], backoff_cap=BACKOFF_CAP) as watcher:
            watcher.wait("applied", commit=mesh_repo.head_sha)
            commits = []
            for round_, tag in enumerate(["1.1.0", "1.2.0", "1.3.0"]):
                for _ in range(rng.randint(2, 6)):
                    methods = rng.choice([{"PATCH"}, {"GET"}, {"PATCH", "GET"}, None])
                    where = rng.choice(kinds)
                    fault = rng.choice(["status", "status", "cut", "slow"])
                    if fault == "status":
                        kube_api.fail_next(rng.randint(1, 3), status=rng.choice([500, 503, 409, 429]), methods=methods,
                                           path_contains=where)
                    elif fault == "cut":
                        kube_api.cut_next(1, methods=methods, path_contains=where, served=rng.random() < 0.5)
                    else:
                        kube_api.delay_next(1, seconds=1.5, methods=methods, path_contains=where)
                spec = mesh_spec(SERVICES, tags=tagged(tag), replicas={service_name(round_): 2})
                commits.append(mesh_repo.commit_file(SPEC_PATH, spec, f"Release {tag}"))
                watcher.wait("applied", timeout=90, commit=commits[-1])
            events = watcher.events()
    finally:
        kube.close()
    assert [r for r in kube_api.requests if r.injected], "no fault was ever injected"
    failures = [e for e in events if e["event"] == "failed"]
    assert all(f["transient"] for f in failures), [f["error"] for f in failures if not f["transient"]]
    assert images(kube_api) == expected_images("1.3.0")
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == commits[-1]
    assert kube_api.double is not None and kube_api.double.internal_errors == []
    deployments = {o["metadata"]["name"] for o in kube_api.double.store_list("deployments", NAMESPACE)}
    assert deployments == set(tagged("x"))
    replicas = {o["metadata"]["name"]: o["spec"]["replicas"] for o in kube_api.double.store_list("deployments", NAMESPACE)}
    assert replicas == {"svc-00": 1, "svc-01": 1, "svc-02": 2}   # the last commit's, not an earlier one's


@pytest.mark.parametrize("move", ["forward", "rewritten"])
def test_the_branch_moving_during_an_apply_ends_on_its_last_head(
        move: str, mesh_repo: GitRepo, kube_api: KubeAPIHandle, kube_target: KubernetesTarget,
        etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    """A commit lands (or the branch is force-pushed to another history) while the sync of the
    previous head is half-way through its Kubernetes writes: that sync ends whole, and the next
    pass applies the branch's new head; nothing of a commit that is no longer on it survives."""
    with watching(mesh_repo.path, [kube_target, etcd_target], backoff_cap=BACKOFF_CAP) as watcher:
        base = watcher.wait("applied", commit=mesh_repo.head_sha)["commit"]
        with deployment_write_held(kube_api, mesh_repo, "2.0.0", "Release 2.0.0") as during:
            if move == "forward":
                mesh_repo.commit_file(SPEC_PATH, mesh_spec(SERVICES, tags=tagged("2.0.0"), replicas={"svc-02": 3}),
                                      "Scale svc-02")
                last = mesh_repo.commit_file(SPEC_PATH, mesh_spec(SERVICES, tags=tagged("2.1.0")), "Release 2.1.0")
                final = "2.1.0"
            else:
                mesh_repo.repo.git.reset("--hard", base)
                last = mesh_repo.commit_file(SPEC_PATH, mesh_spec(SERVICES, tags=tagged("3.0.0")), "Release 3.0.0 instead")
                final = "3.0.0"
        watcher.wait("applied", commit=last)
        events = watcher.events()
    applied = [e["commit"] for e in events if e["event"] == "applied"]
    assert applied[-1] == last
    # The held sync was of `during`: it finished whole or was abandoned, never applied after `last`.
    assert during not in applied[applied.index(last):]
    assert images(kube_api) == expected_images(final)
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == last
    assert all(f["transient"] for f in events if f["event"] == "failed")
