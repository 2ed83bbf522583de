"""`meshc diff --repo R HEAD~1 HEAD` against a `meshc validate` of the same spec.

Builds a Git repository whose last commit changes one service's image in an N-service spec
(bench/gen_mesh.py), then runs, as whole processes taking turns, `meshc validate R/mesh.yaml` and
the diff (and, with --baseline PATH, the diff of another checkout's meshc, e.g. the main branch),
and reports medians of wall and CPU time and the median of paired ratios to validate.

    python -m bench.diff                       # N = 1,000, 7 pairs
    python -m bench.diff --services 1000 --pairs 5 --baseline /work/main
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gen_mesh import build_graph, render

ROOT = Path(__file__).resolve().parents[1]


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


def timed(argv: list[str], tree: Path, expect: tuple[int, ...]) -> tuple[float, float]:
    """Wall and CPU seconds of one process (the child's user + system time)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=tree, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in expect:
        sys.exit(f"{argv} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=None, metavar="TREE",
                        help="also time the diff of the meshc in this checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp), args.services)
        validate = [sys.executable, "-m", "meshc.cli", "validate", str(repo / "mesh.yaml")]
        diff = [sys.executable, "-m", "meshc.cli", "diff", "--repo", str(repo), "HEAD~1", "HEAD"]
        runs: dict[str, list[tuple[float, float]]] = {"validate": [], "diff": [], "baseline diff": []}
        for _ in range(args.pairs):
            runs["validate"].append(timed(validate, ROOT, (0,)))
            runs["diff"].append(timed(diff, ROOT, (3,)))
            if args.baseline is not None:
                runs["baseline diff"].append(timed(diff, args.baseline, (3,)))
    print(f"N = {args.services}, {args.pairs} pairs, load average {os.getloadavg()[0]:.1f}")
    for name, samples in runs.items():
        if not samples:
            continue
        ratios = [cpu / v_cpu for (_, cpu), (_, v_cpu) in zip(samples, runs["validate"])]
        print(f"{name:14s} wall median {statistics.median(w for w, _ in samples):6.2f} s  "
              f"CPU median {statistics.median(c for _, c in samples):6.2f} s  "
              f"paired CPU ratio to validate {statistics.median(ratios):5.2f}x")


if __name__ == "__main__":
    main()
