"""`meshc diff --repo R HEAD~1 HEAD` against a `meshc validate` of the same spec.

Builds a Git repository whose last commit changes one service's image in an N-service spec
(bench/gen_mesh.py), then runs, as whole processes taking turns, `meshc validate R/mesh.yaml` and
the diff (and, with --baseline PATH, the diff of another checkout's meshc, e.g. the main branch;
with --each-jobs, the diff with `--jobs 1` and `--jobs 2` too: by default, meshc checks the two
sides at once only when a CPU is idle as it starts), and reports medians of wall time, CPU time (user +
system, the child checking a side included) and peak memory, and the medians of the paired ratios
of each run to the validate run beside it (and to the baseline's diff), in wall and in CPU time.

The runs share a cache directory of their own (MESHC_CACHE_DIR). A diff keeps the old revision's
check there: `diff` (and `--jobs 1`, `--jobs 2`) run without it (cold: removed before each run),
`diff, kept` with the one the run before kept (warm, as a pull request's diff against a base
branch an earlier diff checked). The detached writer of a cold run is waited for, not counted.

    python -m bench.diff                       # N = 1,000, 7 pairs
    python -m bench.diff --services 1000 --pairs 5 --each-jobs --baseline /work/main
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.gen_mesh import build_graph, render

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR_ENV = "MESHC_CACHE_DIR"


def make_repo(directory: Path, services: int) -> Path:
    spec = render(services, 1, build_graph(services, 1))
    repo = directory / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "mesh.yaml").write_text(spec)
    subprocess.run([*git, "add", "mesh.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "spec"], check=True)
    services = spec.index("\n  services:")
    first = re.compile(r"image: [^\s&*,}]+").search(spec, services)   # one service's (or version's) image
    assert first is not None
    (repo / "mesh.yaml").write_text(spec[:first.end()] + "-next" + spec[first.end():])
    subprocess.run([*git, "commit", "-qam", "one image"], check=True)
    return repo


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float        # user + system of the process and the children it waited for
    rss_mib: float    # the peak resident memory of the process (or of its largest child)


def timed(argv: list[str], tree: Path, expect: tuple[int, ...], kept: Path | None = None) -> Run:
    """One run of argv with `tree`'s meshc. `kept`: the cache directory of the runs, from which
    the checks a diff keeps are removed first (a cold run), and whose writers are waited for
    after it (they run detached, once the diff is out: not counted, and not left to disturb the
    next run); None: a warm run, with what earlier runs kept."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if kept is not None:
        for entry in kept.glob("checked-*"):
            entry.unlink()
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in expect:
            stderr.seek(0)
            sys.exit(f"{argv} exited {process.returncode}: {stderr.read().decode()[-2000:]}")
    settle(Path(os.environ[CACHE_DIR_ENV]))
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def settle(directory: Path) -> None:
    """Wait until no detached writer of a meshc run holds a `.writing` lock in `directory`."""
    for writing in directory.glob("*.writing"):
        try:
            with writing.open("rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_SH)
        except OSError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--each-jobs", action="store_true", help="also time the diff with --jobs 1 and --jobs 2")
    parser.add_argument("--baseline", type=Path, default=None, metavar="TREE",
                        help="also time the diff of the meshc in this checkout")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        # every run's cache directory (generated code, the compiled validator, kept checks): the
        # runs' own, made warm by a first validate
        cache = Path(tmp) / "cache"
        os.environ[CACHE_DIR_ENV] = str(cache)
        repo = make_repo(Path(tmp), args.services)
        validate = [sys.executable, "-m", "meshc.cli", "validate", str(repo / "mesh.yaml")]
        diff = [sys.executable, "-m", "meshc.cli", "diff", "--repo", str(repo), "HEAD~1", "HEAD"]
        timed(validate, ROOT, (0,))
        runs: dict[str, list[Run]] = {"validate": [], "diff": [], "diff --jobs 1": [], "diff --jobs 2": [],
                                      "diff, kept": [], "baseline diff": []}
        for _ in range(args.pairs):
            runs["validate"].append(timed(validate, ROOT, (0,)))
            runs["diff"].append(timed(diff, ROOT, (3,), kept=cache))
            if args.each_jobs:
                runs["diff --jobs 1"].append(timed([*diff, "--jobs", "1"], ROOT, (3,), kept=cache))
                runs["diff --jobs 2"].append(timed([*diff, "--jobs", "2"], ROOT, (3,), kept=cache))
            runs["diff, kept"].append(timed(diff, ROOT, (3,)))   # the old revision's check kept by the last
            if args.baseline is not None:
                runs["baseline diff"].append(timed(diff, args.baseline, (3,)))
    print(f"N = {args.services}, {args.pairs} pairs, load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    for name, samples in runs.items():
        if not samples:
            continue
        pairs = list(zip(samples, runs["validate"]))
        wall_ratio = statistics.median(run.wall / v.wall for run, v in pairs)
        cpu_ratio = statistics.median(run.cpu / v.cpu for run, v in pairs)
        line = (f"{name:14s} wall {statistics.median(r.wall for r in samples):5.2f} s  "
                f"CPU {statistics.median(r.cpu for r in samples):5.2f} s  "
                f"peak {statistics.median(r.rss_mib for r in samples):4.0f} MiB  "
                f"paired ratio to validate: wall {wall_ratio:4.2f}x, CPU {cpu_ratio:4.2f}x")
        if runs["baseline diff"] and name not in ("validate", "baseline diff"):
            before = list(zip(samples, runs["baseline diff"]))
            line += (f"; to the baseline diff: wall {statistics.median(r.wall / b.wall for r, b in before):4.2f}x, "
                     f"CPU {statistics.median(r.cpu / b.cpu for r, b in before):4.2f}x")
        print(line)


if __name__ == "__main__":
    main()
