"""`meshc watch` at rest: CPU and memory of an idle watcher, and how fast it corrects a hand edit.

A `meshc watch` process (default settings: `--interval 5s`) follows a Git repository holding an
N-service mesh and syncs it to the Kubernetes API test double (tests/k8sapi, served from this
process, so its work is not counted) and a real etcd. Once the first sync is done and the watcher
has settled, nothing changes for `--window` seconds: its CPU time (its own and its finished
children's, e.g. `git`) over that window is the idle CPU, in percent of one core, and VmRSS is
sampled every second (and over the settling seconds before: its CPU, RSS peak and LISTs,
the start-up's cost). Then `--edits` times a Deployment's replicas are changed by hand, and the
time until the double holds meshc's value again is measured.

Each mode is a fresh watcher on the same, already synced, cluster: `streams` (the default: drift
found by Kubernetes watch streams) and `polling` (`--no-watch-streams`: a full plan every interval,
as before streams).

    python -m bench.sync.watch_idle --services 1000 [--modes streams,polling] [--window 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gen_mesh import generate
from bench.sync.run_sync import lists_of, read_events, sync_bed
from tests.k8sapi.server import FakeKubeAPI
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until

TICKS = os.sysconf("SC_CLK_TCK")
CORRECTED_TARGET_S = 2.0


@dataclass
class Mode:
    name: str
    first_sync_s: float = 0.0
    idle_cpu_percent: float = 0.0
    rss_mib_max: float = 0.0
    rss_mib_end: float = 0.0
    # The settling seconds right after the first sync (the streams start: LISTs of their own, or
    # none when they start from the first plan's): the watcher's CPU, its RSS peak, and its LISTs.
    settle_cpu_s: float = 0.0
    settle_rss_mib_max: float = 0.0
    settle_lists: int = 0
    corrected_s: list[float] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime: the process and its waited-for children (git)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def namespace_of(kube: FakeKubeAPI) -> str:
    deployments = kube.store_list("deployments")
    return str(next(d for d in deployments if (d["metadata"].get("labels") or {}).get("meshc.dev/mesh"))
               ["metadata"]["namespace"])


def run_mode(mode: Mode, repo: GitRepo, kube: FakeKubeAPI, etcd: EtcdServer, kubeconfig: Path, workdir: Path,
             window: float, settle: float, edits: int) -> None:
    out = workdir / f"watch-{mode.name}.out"
    argv = [sys.executable, "-m", "meshc.cli", "watch", "--repo", str(repo.path), "--kubeconfig", str(kubeconfig),
            "--etcd", etcd.url, "--log-format", "json", "--no-leader-election"]
    if mode.name == "polling":
        argv.append("--no-watch-streams")
    with open(out, "wb") as stdout, open(workdir / f"watch-{mode.name}.err", "wb") as stderr:
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        started = time.perf_counter()
        head = repo.head_sha
        poll_until(lambda: any(e.get("commit") == head and e["event"] in ("applied", "noop") for e in read_events(out)),
                   timeout=600, message=lambda: f"{mode.name}: the watcher did not sync {head}")
        mode.first_sync_s = time.perf_counter() - started
        kube.reset_log()
        cpu, settled = cpu_seconds(process.pid), time.perf_counter() + settle
        while time.perf_counter() < settled:     # the streams start; the first drift pass runs
            mode.settle_rss_mib_max = max(mode.settle_rss_mib_max, rss_mib(process.pid))
            time.sleep(0.25)
        mode.settle_cpu_s, mode.settle_lists = cpu_seconds(process.pid) - cpu, lists_of(kube)
        cpu, rss = cpu_seconds(process.pid), []
        begin = time.perf_counter()
        while time.perf_counter() - begin < window:
            rss.append(rss_mib(process.pid))
            time.sleep(1.0)
        mode.idle_cpu_percent = 100 * (cpu_seconds(process.pid) - cpu) / (time.perf_counter() - begin)
        mode.rss_mib_max, mode.rss_mib_end = max(rss), rss[-1]
        measure_edits(mode, kube, edits)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def measure_edits(mode: Mode, kube: FakeKubeAPI, edits: int) -> None:
    from kubernetes import client

    namespace = namespace_of(kube)
    managed = [d for d in kube.store_list("deployments", namespace)
               if (d["metadata"].get("labels") or {}).get("meshc.dev/mesh")]
    apps = client.AppsV1Api(_api_client(kube))
    for number in range(edits):
        name = managed[number * 7 % len(managed)]["metadata"]["name"]
        want = managed[number * 7 % len(managed)]["spec"]["replicas"]
        apps.patch_namespaced_deployment(name, namespace, {"spec": {"replicas": want + 5}})
        edited = time.perf_counter()
        poll_until(lambda name=name, want=want: (kube.store_get("deployments", name, namespace) or {})
                   .get("spec", {}).get("replicas") == want, timeout=120, interval=0.01,
                   message=f"{mode.name}: {name} not corrected")
        mode.corrected_s.append(time.perf_counter() - edited)
        time.sleep(1.0)


def _api_client(kube: FakeKubeAPI) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = kube.url
    return client.ApiClient(configuration)


def summary(modes: list[Mode], services: int) -> str:
    lines = [f"meshc watch idle, {services} services, default --interval 5s"]
    for mode in modes:
        corrected = sorted(mode.corrected_s)
        lines.append(f"  {mode.name:<9} idle CPU {mode.idle_cpu_percent:5.2f}% of a core, RSS max "
                     f"{mode.rss_mib_max:.0f} MiB (end {mode.rss_mib_end:.0f}); hand edit corrected in median "
                     f"{statistics.median(corrected):.2f} s, max {corrected[-1]:.2f} s "
                     f"(target {CORRECTED_TARGET_S:.0f} s); first sync {mode.first_sync_s:.1f} s")
        lines.append(f"  {'':<9} the {mode.name} watcher's first seconds after its first sync: CPU "
                     f"{mode.settle_cpu_s:.2f} s, RSS max {mode.settle_rss_mib_max:.0f} MiB, {mode.settle_lists} LISTs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="streams,polling")
    parser.add_argument("--window", type=float, default=60.0, help="idle seconds measured (default 60)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the first sync before measuring")
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = generate(args.services, args.seed)
    modes = [Mode(name) for name in args.modes.split(",")]
    load = [os.getloadavg()[0]]
    with sync_bed(spec, args.services, "meshc-bench-idle-") as bed:
        for mode in modes:
            print(f"{mode.name}: {args.services} services, {args.window:.0f} s idle", flush=True)
            run_mode(mode, bed.repo, bed.kube, bed.etcd, bed.kubeconfig, bed.workdir, args.window, args.settle,
                     args.edits)
    load.append(os.getloadavg()[0])
    print(summary(modes, args.services))
    print(f"  load average (1 min) {load[0]:.1f} -> {load[1]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"services": args.services, "load_average": load,
                                         "modes": [asdict(m) for m in modes]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
