"""Compiling a one-service commit: in full, incrementally from the previous commit, and the check alone.

What `meshc watch` (each new commit from the last one compiled) and `plan`/`apply --repo` (the
recorded commit from the one applied) do, in one process: the N-service spec of
bench/gen_mesh.py is compiled once as the base, then each pair changes one image tag and times,
in alternating order, a full compile, an incremental one (`compile(..., base=...)`) and the check
alone (load, validate, resolve, analyze: the floor of any compile). Reports medians of CPU time
and of paired ratios.

    python -m bench.incremental --services 1000 --pairs 7
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from bench.gen_mesh import generate
from bench.sync.run_sync import one_service_change
from meshc.load import SpecSource
from meshc.pipeline import check, compile

MODES = ("full", "incremental", "check")


def timed(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.process_time()
    work()
    return time.process_time() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args(argv)

    spec = generate(args.services)
    base = compile(SpecSource("mesh.yaml", spec.encode()))
    assert base.bundle is not None
    rows: list[dict[str, float]] = []
    for number in range(args.pairs):
        _, changed = one_service_change(spec, number, number + 1)
        source = SpecSource("mesh.yaml", changed.encode())
        work: dict[str, Callable[[], object]] = {
            "full": lambda: compile(source), "incremental": lambda: compile(source, base=base),
            "check": lambda: check(source)}
        order = MODES if number % 2 == 0 else tuple(reversed(MODES))
        rows.append({mode: timed(work[mode]) for mode in order})
    print(f"N = {args.services}, {args.pairs} one-service commits, load average {os.getloadavg()[0]:.1f}")
    for mode in MODES:
        print(f"{mode:12} CPU median {statistics.median(r[mode] for r in rows):.3f} s")
    print(f"incremental / full   paired median {statistics.median(r['incremental'] / r['full'] for r in rows):.2f}x")
    print(f"incremental / check  paired median {statistics.median(r['incremental'] / r['check'] for r in rows):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
