"""Start-up cost: `meshc validate` of a 15-line spec, paired with the floor of a Python process that
parses the same file with libyaml (`python -c "import yaml; yaml.load(..., CSafeLoader)"`).

Runs alternate (floor, meshc, floor, meshc, ...), so both see the same machine; the figure is the
median of the paired ratios (each meshc run over the floor run just before it), reported for wall
time and for CPU time (user + system: on a shared machine the steadier of the two). The target
(issue: fast start-up) is a validate under 0.1 s, set when the floor took 0.036 s: 2.78x the floor,
the form of it that holds on a slower or busier machine (both are checked).

Both run with their bytecode cached, as from an installed meshc (pip compiles it at install): the
scratch directory holds the .pyc files (PYTHONPYCACHEPREFIX), also where PYTHONDONTWRITEBYTECODE
is set, which would compile every meshc module from source on every run (--no-bytecode-cache
measures that). Both keep meshc's cache (MESHC_CACHE_DIR: the compiled validator, the compiled
code of generated dataclass methods) in the scratch directory, written by a warm-up run, as after
a first `meshc validate`; --cold-cache empties it before every run of either checkout: what the
first run after an install or an upgrade costs. --baseline DIR runs the `meshc validate` of
another checkout in the same alternation (floor, meshc, baseline, ...) and reports meshc over it:
a change against the tree before it, back to back.

--no-site runs both sides with `python -S`, the site-packages directories on PYTHONPATH instead:
start-up where no `.pth` file imports modules into every Python process. (On the machine these
figures come from, one does: a hook of the environment imports certifi, and with it
importlib.resources, pathlib, tempfile, zipfile, re..., into the floor and meshc alike, about half
of the floor's time; modules meshc no longer imports, such as pathlib, only show there.)

--build N times `meshc build` of a generated N-service mesh (bench/gen_mesh.py) instead, into a
tmpfs (/dev/shm when there is one; each output deleted untimed): what a change of start-up is
worth to a build, meshc against --baseline. The floor stays the parse of the same spec (a build's
own floor, parse and write, is bench/run_build.py's).

--apply times `meshc apply --repo R mesh.yaml --kubeconfig K --etcd E` of the same 15-line spec
instead, each run applying a new commit that changes one image tag, against the Kubernetes API
test double (served from this process) and a real etcd: what a one-shot sync pays before and
around its work (interpreter, meshc's verb modules, gitpython, the Kubernetes and etcd clients,
discovery, an incremental plan of a few objects, one apply), with next to nothing to compile.
The runs of this checkout and of --baseline alternate on one repository and one etcd, so each
finds the commit applied last by the other: both compile the applied commit again (two services).

    python -m bench.startup                 # 21 pairs
    python -m bench.startup --pairs 51
    python -m bench.startup --baseline /tmp/meshc-before
    python -m bench.startup --cold-cache
    python -m bench.startup --no-site --baseline /tmp/meshc-before
    python -m bench.startup --build 1000 --pairs 15 --baseline /tmp/meshc-before
    python -m bench.startup --apply --pairs 21 --baseline /tmp/meshc-before
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):     # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_mesh, run_build

SPEC = """\
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata:
  name: demo
spec:
  services:
  - name: web
    image: ghcr.io/acme/web:1.0.0
    port: 8080
    upstreams:
    - {service: api, localPort: 9001}
  - name: api
    image: ghcr.io/acme/api:1.0.0
    port: 9090
    healthCheck: {path: /healthz}
"""
TARGET_SECONDS = 0.1
# The target as a ratio: 0.1 s over the floor's 0.036 s on the quiet machine the target was set on.
# On a busier (slower) machine the ratio is the figure that still compares like with like.
QUIET_FLOOR_SECONDS = 0.036
TARGET_RATIO = TARGET_SECONDS / QUIET_FLOOR_SECONDS
TMPFS = Path("/dev/shm")


def commands(spec: Path, build_output: Path | None = None, site: bool = True) -> tuple[list[str], list[str]]:
    """The floor and meshc's command: `meshc validate SPEC`, or `meshc build SPEC -o OUTPUT`;
    without `site`, both run with `python -S` (see environment)."""
    python = [sys.executable] if site else [sys.executable, "-S"]
    floor = [*python, "-c", f"import yaml; yaml.load(open({str(spec)!r}, 'rb'), Loader=yaml.CSafeLoader)"]
    meshc = [*python, *run_build.meshc_command()[1:]]
    if build_output is not None:
        return floor, [*meshc, "build", str(spec), "-o", str(build_output)]
    return floor, [*meshc, "validate", str(spec)]


def site_packages() -> list[str]:
    """Where installed packages are, for a `python -S` that does not look for them."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(paths[key] for key in ("purelib", "platlib")))


def environment(scratch: Path, bytecode_cache: bool, tree: Path | None = None, site: bool = True) -> dict[str, str]:
    """meshc's environment (this checkout, or tree), with .pyc files kept in scratch; without
    `site`, the site-packages directories on PYTHONPATH (after the checkout)."""
    env = run_build.meshc_env()
    env["PYTHONSAFEPATH"] = "1"    # `python -m` would put the working directory (a checkout?) first on the path
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    if not site:
        env["PYTHONPATH"] = os.pathsep.join([*env["PYTHONPATH"].split(os.pathsep), *site_packages()])
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(scratch / ("pycache" if tree is None else "pycache-baseline"))
    elif "PYTHONDONTWRITEBYTECODE" in os.environ:   # as the environment asks (meshc_env drops it)
        env["PYTHONDONTWRITEBYTECODE"] = os.environ["PYTHONDONTWRITEBYTECODE"]
    # The compiled validator's cache (meshc.validate.compiled) lives in scratch, written by the warm-up.
    env["MESHC_CACHE_DIR"] = str(scratch / ("cache" if tree is None else "cache-baseline"))
    return env


def measure(pairs: int, bytecode_cache: bool = True, baseline: Path | None = None,
            cold_cache: bool = False, build: int | None = None, apply: bool = False,
            site: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="meshc-startup-") as scratch_dir, \
            tempfile.TemporaryDirectory(prefix="meshc-startup-", dir=TMPFS if TMPFS.is_dir() else None) as out_dir, \
            contextlib.ExitStack() as services:
        scratch = Path(scratch_dir)
        spec = scratch / "mesh.yaml"
        spec.write_text(SPEC if build is None else gen_mesh.generate(build))
        output = None if build is None else Path(out_dir) / "out"
        floor_cmd, meshc_cmd = commands(spec, output, site)
        before_meshc: Callable[[], None] = lambda: None     # noqa: E731
        if apply:
            meshc_cmd, before_meshc = services.enter_context(apply_bed(scratch))
        env = environment(scratch, bytecode_cache, site=site)
        runs: list[tuple[list[str], dict[str, str]]] = [(floor_cmd, env), (meshc_cmd, env)]
        if baseline is not None:
            runs.append((meshc_cmd, environment(scratch, bytecode_cache, baseline, site=site)))
        for index, (argv, run_env) in enumerate(runs):   # warm the page cache, .pyc files and meshc's cache; not counted
            if output is not None:
                shutil.rmtree(output, ignore_errors=True)
            if index:
                before_meshc()
            run_build.run_process(argv, run_env)
        timed: list[list[run_build.ProcessRun]] = [[] for _ in runs]
        for _ in range(pairs):
            for index, ((argv, run_env), results) in enumerate(zip(runs, timed)):
                if cold_cache:
                    shutil.rmtree(run_env["MESHC_CACHE_DIR"], ignore_errors=True)
                if output is not None:
                    shutil.rmtree(output, ignore_errors=True)
                if index:
                    before_meshc()
                run = run_build.run_process(argv, run_env)
                if run.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)} failed:\n{run.stderr}")
                results.append(run)
    return summary(*timed)


@contextlib.contextmanager
def apply_bed(scratch: Path) -> Iterator[tuple[list[str], Callable[[], None]]]:
    """A Git repository holding SPEC, the API double and a real etcd; yields `meshc apply --repo`
    of them and what to call before each run: commit a change of one image tag (and wait for the
    last run's compile cache writer, as commits applied minutes apart would)."""
    from meshc import compile_cache
    from tests.k8sapi.server import FakeKubeAPI
    from tests.support.etcd import EtcdServer
    from tests.support.gitrepo import GitRepo

    repo = GitRepo.init(scratch / "repo")
    repo.commit_file("mesh.yaml", SPEC, "A two-service mesh")
    tags = itertools.count(1)

    def commit() -> None:
        for cache in scratch.glob("cache*"):
            compile_cache.settle(cache)
        tag = next(tags)
        repo.commit_file("mesh.yaml", SPEC.replace("web:1.0.0", f"web:1.0.{tag}"), f"web 1.0.{tag}")

    with FakeKubeAPI() as kube, EtcdServer(scratch / "etcd") as etcd:
        kubeconfig = kube.write_kubeconfig(scratch / "kubeconfig")
        yield ([*run_build.meshc_command(), "apply", "--repo", str(repo.path), "mesh.yaml",
                "--kubeconfig", str(kubeconfig), "--etcd", etcd.url], commit)
        for cache in scratch.glob("cache*"):
            compile_cache.settle(cache)


def summary(floors: list[run_build.ProcessRun], meshcs: list[run_build.ProcessRun],
            baselines: list[run_build.ProcessRun] | None = None) -> dict[str, float]:
    result = {
        "meshc_wall_median": statistics.median(r.seconds for r in meshcs),
        "meshc_cpu_median": statistics.median(r.cpu_seconds for r in meshcs),
        "floor_wall_median": statistics.median(r.seconds for r in floors),
        "floor_cpu_median": statistics.median(r.cpu_seconds for r in floors),
        "wall_ratio": statistics.median(m.seconds / f.seconds for m, f in zip(meshcs, floors)),
        "cpu_ratio": statistics.median(m.cpu_seconds / max(f.cpu_seconds, 1e-3) for m, f in zip(meshcs, floors)),
        "meshc_wall_best": min(r.seconds for r in meshcs),
        "floor_wall_best": min(r.seconds for r in floors),
    }
    if baselines:
        result |= {
            "baseline_wall_median": statistics.median(r.seconds for r in baselines),
            "baseline_cpu_median": statistics.median(r.cpu_seconds for r in baselines),
            "baseline_cpu_ratio": statistics.median(b.cpu_seconds / max(f.cpu_seconds, 1e-3)
                                                    for b, f in zip(baselines, floors)),
            "vs_baseline_cpu_ratio": statistics.median(m.cpu_seconds / max(b.cpu_seconds, 1e-3)
                                                       for m, b in zip(meshcs, baselines)),
            "vs_baseline_wall_ratio": statistics.median(m.seconds / b.seconds for m, b in zip(meshcs, baselines)),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=21)
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="keep the environment's PYTHONDONTWRITEBYTECODE: compile meshc from source every run")
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="another meshc checkout to time alongside")
    parser.add_argument("--cold-cache", action="store_true",
                        help="empty meshc's cache before every run: the first validate after an install")
    parser.add_argument("--build", type=int, metavar="N",
                        help="time `meshc build` of a generated N-service mesh (into a tmpfs) instead")
    parser.add_argument("--apply", action="store_true",
                        help="time `meshc apply --repo` of the 15-line spec (a new commit each run) against the "
                        "Kubernetes API double and a real etcd instead")
    parser.add_argument("--no-site", action="store_true",
                        help="run the floor and meshc with `python -S` (site-packages on PYTHONPATH): start-up "
                        "without what .pth files import into every Python process")
    args = parser.parse_args(argv)
    if args.apply and args.build is not None:
        parser.error("--apply and --build exclude each other")
    if args.apply and args.no_site:
        parser.error("--apply runs the Kubernetes and etcd clients as installed: not with --no-site")
    result = measure(args.pairs, bytecode_cache=not args.no_bytecode_cache, baseline=args.baseline,
                     cold_cache=args.cold_cache, build=args.build, apply=args.apply, site=not args.no_site)
    what = ("apply --repo (15 lines)" if args.apply else "validate (15 lines)" if args.build is None
            else f"build ({args.build} services)")
    if args.no_site:
        what += ", python -S"
    print(f"meshc {what}: median {result['meshc_wall_median']:.3f} s wall, "
          f"{result['meshc_cpu_median']:.3f} s cpu (best {result['meshc_wall_best']:.3f} s)")
    print(f"floor (python + libyaml):  median {result['floor_wall_median']:.3f} s wall, "
          f"{result['floor_cpu_median']:.3f} s cpu (best {result['floor_wall_best']:.3f} s)")
    print(f"paired ratio meshc/floor: {result['wall_ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x cpu "
          f"({args.pairs} pairs)")
    if args.baseline is not None:
        print(f"baseline ({args.baseline}): median {result['baseline_wall_median']:.3f} s wall, "
              f"{result['baseline_cpu_median']:.3f} s cpu; {result['baseline_cpu_ratio']:.2f}x the floor (cpu)")
        print(f"paired ratio meshc/baseline: {result['vs_baseline_wall_ratio']:.2f}x wall, "
              f"{result['vs_baseline_cpu_ratio']:.2f}x cpu")
    if args.build is None and not args.apply:
        met = result["meshc_cpu_median"] <= TARGET_SECONDS
        print(f"{'PASS' if met else 'FAIL'}  validate under {TARGET_SECONDS} s (cpu median)")
        met = result["cpu_ratio"] <= TARGET_RATIO
        print(f"{'PASS' if met else 'FAIL'}  validate under {TARGET_RATIO:.2f}x the floor (paired cpu ratio; "
              f"{TARGET_SECONDS} s over a {QUIET_FLOOR_SECONDS} s floor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
