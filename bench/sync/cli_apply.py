"""`meshc apply --repo` of a one-service commit, as a whole process: kept, cold, before, and full.

Against the Kubernetes API test double (served from this process) and a real etcd, with a real
Git repository holding `bench/gen_mesh.py N`: after a first apply, each round commits a change of
one image tag and times `meshc apply --repo R --kubeconfig K --etcd E`, in turn:

- `incremental`: the commit etcd records as applied is in the compile cache (the cache directory
  of a machine that applies repeatedly): it is loaded, and the new commit built incrementally
  from it;
- `cold`: the same with no compiled commit kept (the first apply on a machine; meshc's compiled
  validator stays cached, as on any machine that has run meshc once);
- `planned` (with --plan-first): `meshc plan --repo` of the commit first (not timed), then its
  apply, which finds both commits kept: review, then merge;
- `baseline` (with --baseline TREE): the meshc of another checkout, e.g. the tree before a change,
  with none of its own compilations kept (another meshc's entries are another's); then
  `baseline_kept`: the same meshc again, finding the commit its first run applied kept (where
  that meshc keeps compilations at all): the tree before's `incremental`;
- `full`: with `--full` (every object LISTed, nothing kept read).

With --path-mode every run (the first apply included) applies the work tree's spec file as
`meshc apply mesh.yaml ...` from the repository's directory, without --repo (how an edited spec is
applied by hand): etcd records the spec's digest, not a commit, and each round's change is the
file as committed (the work tree holds it).

Each applies its own one-image commit; the runs share one cache directory of their own
(MESHC_CACHE_DIR), and Python's compiled bytecode of meshc's modules is written and read as for
an installed package (PYTHONDONTWRITEBYTECODE is dropped for them). Wall and CPU time (user +
system of the process) per run, and the requests each made (the double's log). Medians over the
rounds, and paired ratios to the baseline. A run's compile cache entry is written by a process
the run does not wait for (meshc.compile_cache.store_detached): its CPU time is not counted, and
each timed run starts once the last one's writer is done (as when commits are applied minutes
apart; a run started at once would wait for it when it needs that entry).

With --importtime, one more apply of each meshc (untimed, after the rounds) runs under
`python -X importtime`: the modules it imported, and their import time summed by top-level
package (self times; `-X importtime` itself adds to them, so compare the two trees, not absolutes).

    python -m bench.sync.cli_apply --services 1000 --rounds 5 [--baseline TREE] [--json F] [--importtime] [--path-mode]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gen_mesh import generate
from meshc import compile_cache
from bench.sync.run_sync import SPEC_PATH, one_service_change, sync_bed
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo

ROOT = Path(__file__).parents[2]


def apply(repo: GitRepo, kubeconfig: Path, etcd: EtcdServer, *extra: str, tree: Path = ROOT,
          cache: Path | None = None, verb: str = "apply", path_mode: bool = False) -> tuple[float, float, int]:
    """Wall and CPU seconds (the process's user + system time) of one `meshc apply` (or another
    verb) of `tree`'s meshc, and its minor page faults (pages it touched first, or copied after
    a fork). `path_mode`: the spec file of the work tree, not --repo."""
    env = {**os.environ, "PYTHONPATH": str(tree), **({"MESHC_CACHE_DIR": str(cache)} if cache else {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # run as an installed meshc does: from compiled bytecode
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    spec, cwd = spec_arguments(repo, tree, path_mode)
    result = subprocess.run([sys.executable, "-m", "meshc.cli", verb, *spec,
                             "--kubeconfig", str(kubeconfig), "--etcd", etcd.url, *extra],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"meshc {verb} failed: {result.stderr}")
    return (elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            after.ru_minflt - before.ru_minflt)


def spec_arguments(repo: GitRepo, tree: Path, path_mode: bool) -> tuple[list[str], Path]:
    """How a run names the spec, and the directory it runs in: `--repo R mesh.yaml` from `tree`,
    or (`path_mode`) `mesh.yaml` from the work tree, as one applies an edited file."""
    if path_mode:
        return [SPEC_PATH], repo.path
    return ["--repo", str(repo.path), SPEC_PATH], tree


def import_profile(repo: GitRepo, kubeconfig: Path, etcd: EtcdServer, tree: Path, cache: Path,
                   path_mode: bool = False) -> dict[str, Any]:
    """One `meshc apply` of `tree` under `python -X importtime`: how many modules it imported
    and the milliseconds spent importing them, in total and by top-level package (largest first)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MESHC_CACHE_DIR": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    spec, cwd = spec_arguments(repo, tree, path_mode)
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "meshc.cli", "apply", *spec,
                             "--kubeconfig", str(kubeconfig), "--etcd", etcd.url],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"meshc apply failed: {result.stderr[-2000:]}")
    by_package: collections.Counter[str] = collections.Counter()
    modules = 0
    for line in result.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            modules += 1
            by_package[found[2].split(".")[0]] += int(found[1])
    return {"modules": modules, "import_ms": round(sum(by_package.values()) / 1000, 1),
            "by_package_ms": {name: round(micros / 1000, 1) for name, micros in by_package.most_common(15)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="also time the incremental apply of the meshc in TREE (another checkout) each round")
    parser.add_argument("--plan-first", action="store_true",
                        help="also time an apply of a commit `meshc plan` has seen first, each round")
    parser.add_argument("--importtime", action="store_true",
                        help="after the rounds, one apply of each meshc under `python -X importtime`: modules and "
                        "import time by package")
    parser.add_argument("--path-mode", action="store_true",
                        help="apply the edited spec file of the work tree (`meshc apply mesh.yaml`, etcd recording "
                        "its digest) instead of the commit (`meshc apply --repo R mesh.yaml`)")
    args = parser.parse_args(argv)
    path_mode: bool = args.path_mode

    spec = generate(args.services)
    rounds: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    with sync_bed(spec, args.services, "meshc-bench-cli-") as bed:
        cache = bed.workdir / "cache"
        first, _, _ = apply(bed.repo, bed.kubeconfig, bed.etcd, cache=cache, path_mode=path_mode)
        print(f"first apply: {first:.2f}s", flush=True)
        modes: list[tuple[str, tuple[str, ...], Path]] = [("incremental", (), ROOT), ("cold", (), ROOT),
                                                          ("full", ("--full",), ROOT)]
        if args.plan_first:
            modes.insert(1, ("planned", (), ROOT))
        if args.baseline:   # its first run finds no commit of its own kept, the second finds the first's
            modes.insert(len(modes) - 1, ("baseline", (), args.baseline))
            modes.insert(len(modes) - 1, ("baseline_kept", (), args.baseline))
        for number in range(1, args.rounds + 1):
            figures: dict[str, Any] = {}
            for index, (mode, extra, tree) in enumerate(modes):
                service, spec = one_service_change(spec, number * len(modes) + index, number)
                bed.repo.commit_file(SPEC_PATH, spec, f"Bump {service}")
                if mode == "cold":
                    compile_cache.settle(cache)    # the last run's entry may still be being written
                    for kept in cache.glob("compiled-*.pickle"):
                        kept.unlink()
                if mode == "planned":
                    apply(bed.repo, bed.kubeconfig, bed.etcd, tree=tree, cache=cache, verb="plan", path_mode=path_mode)
                # Commits are applied minutes apart, a plan reviewed before its apply: the last
                # run's compile cache writer (meshc.compile_cache.store_detached) is done by then.
                compile_cache.settle(cache)
                bed.kube.reset_log()
                figures[f"{mode}_s"], figures[f"{mode}_cpu_s"], figures[f"{mode}_minflt"] = apply(
                    bed.repo, bed.kubeconfig, bed.etcd, *extra, tree=tree, cache=cache, path_mode=path_mode)
                figures[f"{mode}_requests"] = len(bed.kube.requests)
                figures[f"{mode}_lists"] = sum(1 for r in bed.kube.requests if "labelSelector" in r.query)
                figures[f"{mode}_writes"] = len(bed.kube.writes())
            rounds.append(figures)
            print(f"round {number}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in figures.items()), flush=True)
        imports: dict[str, Any] = {}
        if args.importtime:
            for name, tree in (("meshc", ROOT), *((("baseline", args.baseline),) if args.baseline else ())):
                compile_cache.settle(cache)
                service, spec = one_service_change(spec, len(imports) + 1, args.rounds + 1)
                bed.repo.commit_file(SPEC_PATH, spec, f"Bump {service}")
                imports[name] = import_profile(bed.repo, bed.kubeconfig, bed.etcd, tree, cache, path_mode)
        compile_cache.settle(cache)     # the last writer is done before the directory goes
    load.append(os.getloadavg()[0])
    names = [mode for mode, _, _ in modes]
    summary: dict[str, Any] = {"services": args.services, "rounds": args.rounds, "path_mode": path_mode,
                               "load_average": load}
    for mode in names:
        summary[f"{mode}_s"] = _median(rounds, f"{mode}_s")
        summary[f"{mode}_cpu_s"] = _median(rounds, f"{mode}_cpu_s")
        summary[f"{mode}_minflt"] = _median(rounds, f"{mode}_minflt")
        summary[f"{mode}_requests"] = sorted({r[f"{mode}_requests"] for r in rounds})
        summary[f"{mode}_lists"] = sorted({r[f"{mode}_lists"] for r in rounds})
        summary[f"{mode}_writes"] = sorted({r[f"{mode}_writes"] for r in rounds})
    summary["paired_ratio_to_full"] = _paired(rounds, "incremental_s", "full_s")
    if args.baseline:
        for mode in (mode for mode in ("incremental", "planned", "cold") if mode in names):
            summary[f"{mode}_paired_ratio_to_baseline"] = _paired(rounds, f"{mode}_s", "baseline_s")
            summary[f"{mode}_paired_cpu_ratio_to_baseline"] = _paired(rounds, f"{mode}_cpu_s", "baseline_cpu_s")
        summary["incremental_paired_ratio_to_baseline_kept"] = _paired(rounds, "incremental_s", "baseline_kept_s")
        summary["incremental_paired_cpu_ratio_to_baseline_kept"] = _paired(rounds, "incremental_cpu_s",
                                                                           "baseline_kept_cpu_s")
    if imports:
        summary["imports"] = imports
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2) + "\n")
    return 0


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(float(r[key]) for r in rounds), 3)


def _paired(rounds: list[dict[str, Any]], key: str, other: str) -> float:
    """The median over the rounds of key/other, each pair measured in the same round."""
    return round(statistics.median(float(r[key]) / float(r[other]) for r in rounds), 3)


if __name__ == "__main__":
    sys.exit(main())
