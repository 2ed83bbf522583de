"""`meshc apply --repo` of a one-service commit, as a whole process, incremental against full.

Against the Kubernetes API test double (served from this process) and a real etcd, with a real
Git repository holding `bench/gen_mesh.py N`: after a first apply, each round commits a change of
one image tag and times `meshc apply --repo R --kubeconfig K --etcd E` (planned against the commit
etcd records: only that service's objects read), then commits another and times the same with
`--full` (every object LISTed, as before); the ratio is the median of incremental/full over the
rounds. The requests each made are counted in the double's log.

    python -m bench.sync.cli_apply --services 1000 --rounds 5 [--baseline TREE] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gen_mesh import generate
from bench.sync.run_sync import SPEC_PATH, one_service_change, sync_bed
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo

ROOT = Path(__file__).parents[2]


def apply(repo: GitRepo, kubeconfig: Path, etcd: EtcdServer, *extra: str, tree: Path = ROOT) -> tuple[float, float]:
    """Wall and CPU seconds (the process's user + system time) of one `meshc apply` of `tree`'s meshc."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "meshc.cli", "apply", "--repo", str(repo.path), SPEC_PATH,
                             "--kubeconfig", str(kubeconfig), "--etcd", etcd.url, *extra],
                            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                            timeout=600)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"meshc apply failed: {result.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="also time the incremental apply of the meshc in TREE (another checkout) each round")
    args = parser.parse_args(argv)

    spec = generate(args.services)
    rounds: list[dict[str, Any]] = []
    with sync_bed(spec, args.services, "meshc-bench-cli-") as bed:
        first, _ = apply(bed.repo, bed.kubeconfig, bed.etcd)
        print(f"first apply: {first:.2f}s", flush=True)
        modes: list[tuple[str, tuple[str, ...], Path]] = [("incremental", (), ROOT), ("full", ("--full",), ROOT)]
        if args.baseline:
            modes.insert(1, ("baseline", (), args.baseline))
        for number in range(1, args.rounds + 1):
            figures: dict[str, Any] = {}
            for index, (mode, extra, tree) in enumerate(modes):
                service, spec = one_service_change(spec, number * len(modes) + index, number)
                bed.repo.commit_file(SPEC_PATH, spec, f"Bump {service}")
                bed.kube.reset_log()
                figures[f"{mode}_s"], figures[f"{mode}_cpu_s"] = apply(bed.repo, bed.kubeconfig, bed.etcd, *extra,
                                                                       tree=tree)
                figures[f"{mode}_requests"] = len(bed.kube.requests)
                figures[f"{mode}_lists"] = sum(1 for r in bed.kube.requests if "labelSelector" in r.query)
                figures[f"{mode}_writes"] = len(bed.kube.writes())
            rounds.append(figures)
            print(f"round {number}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in figures.items()), flush=True)
    summary = {
        "services": args.services, "rounds": args.rounds,
        "incremental_s": round(statistics.median(r["incremental_s"] for r in rounds), 3),
        "full_s": round(statistics.median(r["full_s"] for r in rounds), 3),
        "paired_ratio": round(statistics.median(r["incremental_s"] / r["full_s"] for r in rounds), 3),
        "incremental_cpu_s": round(statistics.median(r["incremental_cpu_s"] for r in rounds), 3),
        "full_cpu_s": round(statistics.median(r["full_cpu_s"] for r in rounds), 3),
        **({"baseline_s": round(statistics.median(r["baseline_s"] for r in rounds), 3),
            "baseline_cpu_s": round(statistics.median(r["baseline_cpu_s"] for r in rounds), 3),
            "paired_cpu_ratio_to_baseline": round(statistics.median(
                r["incremental_cpu_s"] / r["baseline_cpu_s"] for r in rounds), 3)} if args.baseline else {}),
        "incremental_requests": sorted({r["incremental_requests"] for r in rounds}),
        "incremental_lists": sorted({r["incremental_lists"] for r in rounds}),
        "writes": sorted({r["incremental_writes"] for r in rounds} | {r["full_writes"] for r in rounds}),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
