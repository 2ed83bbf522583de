"""`meshc watch` as a process: signals, a kill mid-apply, two replicas and one lock, --once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from meshc.commands.watch import compile_function
from meshc.load.git import read_spec_at_revision
from meshc.sync.engine import sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Target
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until
from tests.watch.harness import WatchProcess, matching
from tests.watch.specs import BROKEN_SPEC, PREFIX, SPEC_PATH, mesh_spec
from tests.watch.test_watch_loop import deployment_image, etcd_value

Spawn = Callable[..., WatchProcess]


@pytest.fixture
def spawn(tmp_path: Path, mesh_repo: GitRepo, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> Iterator[Spawn]:
    """`spawn(name, *extra_args)`: a started `meshc watch` on the repo, the API double and etcd."""
    started: list[WatchProcess] = []

    def start(name: str = "watch", *extra: str) -> WatchProcess:
        args = ["--repo", str(mesh_repo.path), "--interval", "0.2s", "--kubeconfig", str(kube_api.kubeconfig),
                "--etcd", etcd_server.url, "--lock-ttl", "2s", "--max-backoff", "1s", *extra]
        process = WatchProcess(tmp_path / "watchers", args, name)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
        print(process.process.log_tail())  # shown by pytest only when the test failed


def converged(repo: GitRepo, targets: Sequence[Target]) -> bool:
    """A fresh plan of the head commit against live state changes nothing."""
    diagnostics, bundle = compile_function()(read_spec_at_revision(str(repo.path), repo.head_sha, SPEC_PATH))
    assert bundle is not None, diagnostics
    report = sync_once(bundle, targets, revision=repo.head_sha, dry_run=True)
    return not report.changed


def lock_holder(etcd: EtcdServer) -> str | None:
    return etcd_value(etcd, f"{PREFIX}/lock")


def test_sigterm_during_an_apply_finishes_it_and_exits_cleanly(spawn: Spawn, mesh_repo: GitRepo,
                                                                kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    watcher = spawn()
    watcher.wait("applied", commit=mesh_repo.head_sha)
    identity = watcher.wait("leader", leader=True)["identity"]
    assert lock_holder(etcd_server) == identity
    kube_api.delay_next(10, seconds=1.0, methods={"PATCH"})
    change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-00": "3.0.0"}), "Bump svc-00")
    watcher.wait("applying", commit=change)
    watcher.signal(signal.SIGTERM)
    assert watcher.wait_exit() == 0
    events = watcher.events()
    assert matching(events, "applied", commit=change), "the apply under way was finished"
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "SIGTERM"
    assert deployment_image(kube_api, "svc-00") == "ghcr.io/acme/svc-00:3.0.0"
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change
    assert lock_holder(etcd_server) is None, "the lock is released at once"


def test_killed_mid_apply_and_restarted_converges(spawn: Spawn, mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                  kube_target: KubernetesTarget, etcd_server: EtcdServer,
                                                  etcd_target: EtcdTarget) -> None:
    first = spawn("first")
    first.wait("applied", commit=mesh_repo.head_sha)
    # ConfigMaps and Services go through at once; every Deployment write hangs for a while.
    kube_api.delay_next(10, seconds=1.5, methods={"PATCH"}, path_contains="/deployments/")
    kube_api.reset_log()
    spec = mesh_spec(3, tags={"svc-00": "4.0.0", "svc-01": "4.0.0", "svc-02": "4.0.0"}).replace(
        "port: 8080", "port: 8081")
    change = mesh_repo.commit_file(SPEC_PATH, spec, "Move every service to port 8081, images 4.0.0")
    poll_until(lambda: any(r.method == "PATCH" and "/configmaps/" in r.path and r.changed for r in kube_api.requests),
               timeout=30, message="no ConfigMap was written")
    first.signal(signal.SIGKILL)
    first.wait_exit()
    assert not matching(first.events(), "applied", commit=change)
    assert etcd_value(etcd_server, f"{PREFIX}/revision") != change, "etcd goes last: it still names the old commit"

    second = spawn("second")   # takes the lock once the dead watcher's lease expires (2 s)
    second.wait("applied", commit=change)
    assert etcd_value(etcd_server, f"{PREFIX}/revision") == change
    for name in ("svc-00", "svc-01", "svc-02"):
        assert deployment_image(kube_api, name) == f"ghcr.io/acme/{name}:4.0.0"
    assert converged(mesh_repo, [kube_target, etcd_target])


def test_two_watchers_one_lock_only_the_holder_applies(spawn: Spawn, mesh_repo: GitRepo, kube_api: KubeAPIHandle,
                                                       etcd_server: EtcdServer) -> None:
    a, b = spawn("a"), spawn("b")
    leaders = poll_until(lambda: [w for w in (a, b) if matching(w.events(), "leader", leader=True)], timeout=30)
    assert len(leaders) == 1
    leader = leaders[0]
    standby = b if leader is a else a
    standby.wait("leader", leader=False)
    leader.wait("applied", commit=mesh_repo.head_sha)
    kube_api.reset_log()
    change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "5.0.0"}), "Bump svc-01")
    applied = leader.wait("applied", commit=change)
    poll_until(lambda: etcd_value(etcd_server, f"{PREFIX}/revision") == change, timeout=10)
    assert not matching(standby.events(), "applied") and not matching(standby.events(), "applying")
    writes = kube_api.writes()
    assert len(writes) == applied["targets"]["kubernetes"]["writes"] > 0, writes
    assert all(r.field_manager == "meshc" for r in writes)

    # The holder stops: it releases the lock, and the standby takes over and applies the next commit.
    leader.signal(signal.SIGTERM)
    assert leader.wait_exit() == 0
    standby.wait("leader", leader=True)
    after = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "5.1.0"}), "Bump svc-01 again")
    standby.wait("applied", commit=after)
    assert deployment_image(kube_api, "svc-01") == "ghcr.io/acme/svc-01:5.1.0"


def run_once(repo: GitRepo, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", "watch", "--repo", str(repo.path), "--once",
                           "--log-format", "json", *targets], capture_output=True, text=True, timeout=120, check=False)


def test_once_exit_codes(mesh_repo: GitRepo, tmp_path: Path) -> None:
    out = ["--output", str(tmp_path / "out")]
    good = run_once(mesh_repo, *out)
    assert good.returncode == 0, good.stderr
    assert '"event": "applied"' in good.stdout and (tmp_path / "out" / "manifest.json").is_file()
    again = run_once(mesh_repo, *out)
    assert again.returncode == 0 and '"event": "noop"' in again.stdout
    mesh_repo.commit_file(SPEC_PATH, BROKEN_SPEC, "Break the spec")
    bad = run_once(mesh_repo, *out)
    assert bad.returncode == 1 and '"event": "invalid"' in bad.stdout
    usage = run_once(mesh_repo)
    assert usage.returncode == 2 and "no target" in usage.stderr
