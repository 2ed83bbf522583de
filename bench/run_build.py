"""The build benchmark: `meshc build` wall time and peak memory per mesh size, next to the floor.

For each N (default 10, 100, 1,000, 10,000) it generates a mesh (bench/gen_mesh.py), builds it with
the real `meshc build` in a subprocess (best of k runs into an output directory that does not exist
yet; peak RSS of the largest process from GNU time), measures the floor in the same run
(bench/floor.py: libyaml parse + writing the same files; builds and floors alternate), measures
the peak memory of meshc and its build workers together in one more build (TreeMemory), times
`meshc validate` on a small spec with its import profile, and optionally the Jsonnet and KCL
baselines (bench/baselines/). Prints a table, checks the targets and writes JSON to bench/results/.

Each size is measured twice: writing to the scratch directory's disk, and writing to a tmpfs
(--tmpfs, /dev/shm by default), builds and floors alternating in each. A disk's file-creation
speed can swing 2-10x for minutes and inflates both sides alike; on a tmpfs creating a file costs
memory speed, so the tmpfs ratio is the one that measures meshc's own work.

    python -m bench.run_build                      # N = 10, 100, 1000, 10000
    python -m bench.run_build --sizes 10 100 --repeat 3 --no-validate
    python -m bench.run_build --baselines          # also Jsonnet and KCL at N=1000
    python -m bench.run_build --sizes 1000 --meshc-jobs 1    # meshc in one process
    python -m bench.run_build --sizes 10 --report-only       # exit 0 whenever it ran, targets met or not
    python -m bench.run_build --sizes 1000 --no-tmpfs        # the disk only
    python -m bench.run_build --sizes 1000 --no-validate --baseline /tmp/meshc-before   # against another tree

--baseline DIR also builds with another checkout's meshc (PYTHONPATH=DIR) in the tmpfs alternation
(this tree, floor, the baseline; the next round the baseline first), and reports the median of
this tree's build over the baseline's next to it, in wall and in CPU time: a change against the
tree before it, back to back on the same machine.

The exit code is 1 when a target is missed, unless --report-only: the test suite runs the
benchmark that way, so a busy machine cannot fail CI (timing targets are read from the report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

if __package__ in (None, ""):     # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import floor, gen_mesh

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SMALL_SPEC = ROOT / "examples" / "shop" / "mesh.yaml"
DEFAULT_SIZES = (10, 100, 1000, 10_000)

# Targets (issue: build benchmark). Seconds, ratios and KiB.
TARGET_1K_SECONDS = 1.5
TARGET_FLOOR_RATIO = 2.0
TARGET_TMPFS_FLOOR_RATIO = 1.5     # N = 1,000, build and floor both writing to a tmpfs
DEFAULT_TMPFS = Path("/dev/shm")
TARGET_10K_RSS_KIB = 1024 * 1024
TARGET_GROWTH = 12.0
TARGET_VALIDATE_SECONDS = 0.3
TARGET_BASELINE_SPEEDUP = 4.0
HEAVY_MODULES = ("kubernetes", "pydantic", "git", "jsonschema", "ruamel", "rich", "etcd3gw", "prometheus_client",
                 "yaml", "orjson")


@dataclass
class ProcessRun:
    seconds: float
    cpu_seconds: float            # user + system of the child and what it waited for
    max_rss_kib: int
    returncode: int
    stderr: str


@dataclass
class TmpfsResult:
    """The same build and floor, both writing to a tmpfs: creating a file costs no disk time."""
    directory: str
    meshc_seconds: float
    meshc_runs: list[float]
    meshc_cpu_seconds: float
    floor_seconds: float
    floor_runs: list[float]
    floor_cpu_seconds: float
    floor_parse_seconds: float
    floor_write_seconds: float
    ratio: float                  # best build / best floor
    paired_ratio: float           # median of build / floor over neighbouring runs
    meshc_cpu_runs: list[float] = field(default_factory=list)
    baseline: BaselineResult | None = None    # --baseline: the other tree's builds in the same alternation


@dataclass
class BaselineResult:
    """Another checkout's `meshc build`, run in the same alternation as this tree's and the floor's."""
    tree: str
    seconds: float                # best
    runs: list[float]
    cpu_seconds: float            # least
    cpu_runs: list[float]
    paired_ratio: float           # median of its build / the floor run beside it
    vs_baseline: float            # median of this tree's build / the baseline's, same round
    vs_baseline_cpu: float        # the same in CPU time (user + system, workers included)


@dataclass
class SizeResult:
    n: int
    spec_bytes: int
    spec_lines: int
    files: int
    output_bytes: int
    meshc_seconds: float
    meshc_runs: list[float]
    meshc_cpu_seconds: float      # least user+system time over the runs (less sensitive to other load)
    compile_seconds: float        # meshc's compile step in the runner's process: load to bundle, no writing
    meshc_max_rss_kib: int        # peak RSS of the largest process (GNU time)
    meshc_tree_pss_kib: int       # peak of the summed PSS of meshc and its build workers (TreeMemory)
    floor_seconds: float
    floor_runs: list[float]
    floor_cpu_seconds: float
    floor_parse_seconds: float
    floor_write_seconds: float
    ratio: float                  # best build / best floor: the target's measure
    paired_ratio: float           # median of build / floor over runs made back to back (see paired_ratio)
    tmpfs: TmpfsResult | None = None    # the same, writing to a tmpfs (None with --no-tmpfs)


@dataclass
class ValidateResult:
    spec: str
    seconds: float
    runs: list[float]
    max_rss_kib: int
    top_imports: list[dict[str, Any]]
    heavy_imported: list[dict[str, Any]]


@dataclass
class Report:
    machine: dict[str, Any]
    sizes: list[SizeResult] = field(default_factory=list)
    validate: ValidateResult | None = None
    baselines: list[dict[str, Any]] = field(default_factory=list)
    file_create_us: list[float] = field(default_factory=list)    # probes before and after each size
    checks: list[dict[str, Any]] = field(default_factory=list)


# Extra `meshc build` arguments for every timed build (--meshc-jobs sets `--jobs N`); none by
# default: the benchmark measures what a user gets.
BUILD_ARGS: list[str] = []
# --baseline: another checkout whose `meshc build` is timed alongside on the tmpfs.
BASELINE: list[Path] = []


def meshc_command() -> list[str]:
    """`meshc` as `python -m meshc.cli`, run with meshc_env(): always this checkout's code, whether or
    not (and however) meshc is installed, and no pyenv shim in the timing."""
    return [sys.executable, "-m", "meshc.cli"]


def meshc_env(tree: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH", "")) if p)
    # `python -m` (and -c) would put the working directory first on the path: run from a checkout,
    # that checkout's meshc would run whatever tree PYTHONPATH names (--baseline).
    env["PYTHONSAFEPATH"] = "1"
    # Run as an installed meshc does, from compiled bytecode: where PYTHONDONTWRITEBYTECODE is
    # set, every run would otherwise compile meshc's ~100 modules from source.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


GNU_TIME = Path("/usr/bin/time")


def run_process(argv: list[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Wall time and the child's own peak RSS in KiB.

    The RSS comes from GNU time when it is installed: the kernel folds the pre-exec memory of a
    forked child (a copy of this large runner) into its peak, while time's own fork is tiny. The
    wall time is taken here and includes time's negligible start (~1 ms).
    """
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss_file:
        use_time = GNU_TIME.exists()
        command = [str(GNU_TIME), "-f", "%M", "-o", rss_file.name, *argv] if use_time else argv
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        assert child.stderr is not None
        err = child.stderr.read()   # read before waiting, so a chatty child cannot block on a full pipe
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        child.stderr.close()
        rss = int(usage.ru_maxrss)
        if use_time:
            reported = Path(rss_file.name).read_text().split()
            rss = int(reported[-1]) if reported and reported[-1].isdigit() else rss
    cpu = usage.ru_utime + usage.ru_stime
    return ProcessRun(seconds, cpu, rss, child.returncode, err.decode(errors="replace"))


class TreeMemory:
    """Peak memory of a process and all its descendants together, sampled from /proc.

    `meshc build` forks workers for large meshes, and a process's peak RSS (GNU time) then shows
    only the largest one, while adding RSS would count pages they share (copy-on-write) once per
    process. The sum of their proportional set sizes (PSS: each shared page split between its
    sharers) is what the machine really had to provide. Sampling every `interval` seconds may miss
    a peak shorter than that; smaps_rollup walks the process's page tables, so this is kept out of
    the timed runs."""

    def __init__(self, root: int, interval: float = 0.01) -> None:
        self.root = root
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(pid) for pid in _tree(self.root)))
            self._stop.wait(self.interval)


def _tree(root: int) -> list[int]:
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        try:
            queue += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pass
    return pids


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def build_memory_kib(spec: Path, out: Path, trash: Path | None = None) -> int:
    """Peak PSS of one `meshc build` and its workers together (an untimed run)."""
    if out.exists():
        floor.set_aside(out, trash)
    child = subprocess.Popen([*meshc_command(), "build", str(spec), "-o", str(out), *BUILD_ARGS], env=meshc_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with TreeMemory(child.pid) as memory:
        returncode = child.wait()
    if returncode != 0:
        raise RuntimeError(f"meshc build {spec} failed ({returncode})")
    return memory.peak_kib


def build_once(spec: Path, out: Path, trash: Path | None = None, tree: Path = ROOT) -> ProcessRun:
    if out.exists():
        floor.set_aside(out, trash)
    run = run_process([*meshc_command(), "build", str(spec), "-o", str(out), *BUILD_ARGS], meshc_env(tree))
    if run.returncode != 0:
        raise RuntimeError(f"meshc build {spec} failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return run


def paired_ratio(builds: list[float], floors: list[float]) -> float:
    """The median ratio of each build to the floor run right after it. When the disk switches
    between fast and slow periods, the best build and the best floor may come from different
    periods and their ratio says more about luck than about meshc; neighbours saw the same disk."""
    return statistics.median(b / f for b, f in zip(builds, floors, strict=True))


class Timed(Protocol):
    """A run of either side: a build (ProcessRun) or a floor (floor.FloorRun)."""

    @property
    def seconds(self) -> float: ...

    @property
    def cpu_seconds(self) -> float: ...


TimedRun = TypeVar("TimedRun", bound=Timed)


@dataclass(frozen=True)
class Best(Generic[TimedRun]):
    """One side's runs as its record keeps them: the run with the least wall time (a floor's
    parse and write are that run's), the one with the least CPU time (not always the same run),
    and every run's wall and CPU time, rounded, in the order they ran."""
    fastest: TimedRun
    least_cpu: TimedRun
    runs: list[float]
    cpu_runs: list[float]


def best_of(runs: Sequence[TimedRun]) -> Best[TimedRun]:
    return Best(fastest=min(runs, key=lambda r: r.seconds), least_cpu=min(runs, key=lambda r: r.cpu_seconds),
                runs=[round(r.seconds, 4) for r in runs], cpu_runs=[round(r.cpu_seconds, 4) for r in runs])


def alternate(spec: Path, out: Path, reference: floor.Files, work: Path, trash: Path | None,
              repeat: int) -> tuple[list[ProcessRun], list[floor.FloorRun]]:
    """`repeat` builds and floors, interleaved (build, floor, build, floor, ...) so that both see the
    same machine: on a shared machine, load from other processes comes and goes."""
    runs: list[ProcessRun] = []
    floors: list[floor.FloorRun] = []
    for _ in range(repeat):
        runs.append(build_once(spec, out, trash))
        floor.set_aside(out, trash)
        floors.append(floor.run_once(spec, reference, work, trash))
    return runs, floors


def measure_size(n: int, seed: int, repeat: int, work: Path, tmpfs: Path | None = None) -> SizeResult:
    """Best of `repeat` builds and floors writing to work's disk, then the same on the tmpfs
    directory `tmpfs` (when given)."""
    spec = work / f"mesh-{n}.yaml"
    text = gen_mesh.generate(n, seed)
    spec.write_text(text, encoding="utf-8")
    out = work / f"out-{n}"
    trash = work / "trash"     # emptied when all timing is done (see floor.set_aside)
    first = build_once(spec, out, trash)
    reference = floor.read_tree(out)
    floor.set_aside(out, trash)
    floors = [floor.run_once(spec, reference, work, trash)]
    more_runs, more_floors = alternate(spec, out, reference, work, trash, repeat - 1)
    runs = [first, *more_runs]
    floors += more_floors
    tree_pss = build_memory_kib(spec, out, trash)
    floor.set_aside(out, trash)
    build, floor_ = best_of(runs), best_of(floors)
    compile_seconds = meshc_compile_seconds(spec, repeat)
    return SizeResult(
        n=n, spec_bytes=len(text.encode()), spec_lines=text.count("\n"), files=len(reference),
        output_bytes=sum(len(d) for d in reference.values()), meshc_seconds=build.fastest.seconds,
        meshc_runs=build.runs, meshc_cpu_seconds=build.least_cpu.cpu_seconds,
        meshc_max_rss_kib=max(r.max_rss_kib for r in runs), meshc_tree_pss_kib=tree_pss,
        floor_cpu_seconds=floor_.least_cpu.cpu_seconds, compile_seconds=compile_seconds,
        floor_seconds=floor_.fastest.seconds, floor_runs=floor_.runs,
        floor_parse_seconds=floor_.fastest.parse_seconds, floor_write_seconds=floor_.fastest.write_seconds,
        ratio=build.fastest.seconds / floor_.fastest.seconds,
        paired_ratio=paired_ratio([r.seconds for r in runs], [f.seconds for f in floors]),
        tmpfs=None if tmpfs is None else measure_tmpfs(spec, reference, tmpfs, repeat),
    )


def measure_tmpfs(spec: Path, reference: floor.Files, tmpfs: Path, repeat: int) -> TmpfsResult:
    """Builds and floors alternating, both writing under a new directory in `tmpfs`. Outputs are
    deleted at once (untimed): a tmpfs has no discard to slow later creations, and keeping them
    would hold their bytes in memory."""
    work = Path(tempfile.mkdtemp(prefix="meshc-bench-", dir=tmpfs))
    try:
        build_once(spec, work / "out")      # warms the page cache and the imports, like the disk's first run
        if not BASELINE:
            runs, floors = alternate(spec, work / "out", reference, work, None, repeat)
            return tmpfs_result(str(tmpfs), runs, floors)
        build_once(spec, work / "out", tree=BASELINE[0])
        runs, floors, base_runs = alternate_with_baseline(spec, work / "out", reference, work, repeat, BASELINE[0])
        result = tmpfs_result(str(tmpfs), runs, floors)
        result.baseline = baseline_result(BASELINE[0], runs, floors, base_runs)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def alternate_with_baseline(spec: Path, out: Path, reference: floor.Files, work: Path, repeat: int,
                            baseline: Path) -> tuple[list[ProcessRun], list[floor.FloorRun], list[ProcessRun]]:
    """`repeat` rounds of this tree's build, a floor and the baseline's build, the two builds
    swapping places every other round (neither always runs right after the floor)."""
    runs: list[ProcessRun] = []
    floors: list[floor.FloorRun] = []
    base_runs: list[ProcessRun] = []
    for round_ in range(repeat):
        sides = [(ROOT, runs), (baseline, base_runs)]
        first, second = sides if round_ % 2 == 0 else sides[::-1]
        first[1].append(build_once(spec, out, tree=first[0]))
        shutil.rmtree(out)
        floors.append(floor.run_once(spec, reference, work))
        second[1].append(build_once(spec, out, tree=second[0]))
        shutil.rmtree(out)
    return runs, floors, base_runs


def baseline_result(tree: Path, runs: list[ProcessRun], floors: list[floor.FloorRun],
                    base_runs: list[ProcessRun]) -> BaselineResult:
    best = best_of(base_runs)
    return BaselineResult(
        tree=str(tree), seconds=best.fastest.seconds, runs=best.runs,
        cpu_seconds=best.least_cpu.cpu_seconds, cpu_runs=best.cpu_runs,
        paired_ratio=paired_ratio([r.seconds for r in base_runs], [f.seconds for f in floors]),
        vs_baseline=statistics.median(r.seconds / b.seconds for r, b in zip(runs, base_runs, strict=True)),
        vs_baseline_cpu=statistics.median(r.cpu_seconds / b.cpu_seconds for r, b in zip(runs, base_runs, strict=True)))


def tmpfs_result(directory: str, runs: list[ProcessRun], floors: list[floor.FloorRun]) -> TmpfsResult:
    """What the tmpfs record says of its alternating runs: each side's best, and their ratios."""
    build, floor_ = best_of(runs), best_of(floors)
    return TmpfsResult(
        directory=directory, meshc_seconds=build.fastest.seconds, meshc_runs=build.runs,
        meshc_cpu_seconds=build.least_cpu.cpu_seconds, floor_seconds=floor_.fastest.seconds,
        floor_runs=floor_.runs, floor_cpu_seconds=floor_.least_cpu.cpu_seconds,
        floor_parse_seconds=floor_.fastest.parse_seconds, floor_write_seconds=floor_.fastest.write_seconds,
        ratio=build.fastest.seconds / floor_.fastest.seconds,
        paired_ratio=paired_ratio([r.seconds for r in runs], [f.seconds for f in floors]),
        meshc_cpu_runs=build.cpu_runs)


def tmpfs_directory(requested: Path | None, disabled: bool) -> Path | None:
    """Where the tmpfs runs write: --tmpfs, else /dev/shm when this machine has one."""
    if disabled:
        return None
    if requested is not None:
        if not requested.is_dir():
            raise SystemExit(f"--tmpfs {requested}: not a directory")
        return requested
    return DEFAULT_TMPFS if DEFAULT_TMPFS.is_dir() and os.access(DEFAULT_TMPFS, os.W_OK) else None


def meshc_compile_seconds(spec: Path, repeat: int) -> float:
    """meshc's compile step (load to bundle, nothing written) in this process, cyclic GC off as
    `meshc build` has it: the part of a build that does not depend on the disk."""
    import gc

    from meshc.load import read_spec_file
    from meshc.pipeline import compile

    runs = []
    for _ in range(repeat):
        gc.disable()
        start = time.perf_counter()
        compiled = compile(read_spec_file(str(spec)))
        runs.append(time.perf_counter() - start)
        gc.enable()
        if compiled.bundle is None:
            raise RuntimeError(f"meshc could not compile {spec}")
    return min(runs)


def file_create_probe(work: Path, count: int = 1000) -> float:
    """Microseconds to create one empty file here, now: on a shared machine this swings widely and
    it is most of a large build's time (and of the floor's)."""
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=work))
    start = time.perf_counter()
    for i in range(count):
        with open(probe / str(i), "wb"):
            pass
    seconds = time.perf_counter() - start
    shutil.rmtree(probe)
    return seconds / count * 1e6


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def import_profile(stderr: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """From `python -X importtime` output: the costliest imports below the top level, and for each
    heavy package seen, its own cost and the chain of meshc modules that pulled it in."""
    rows: list[tuple[int, str, int, int]] = []     # indent, module, self us, cumulative us
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            rows.append((len(match[3]), match[4], int(match[1]), int(match[2])))
    # importtime prints children before their parent: a row's parent is the next row less indented.
    parents: list[int | None] = []
    for i, (indent, *_rest) in enumerate(rows):
        parents.append(next((j for j in range(i + 1, len(rows)) if rows[j][0] < indent), None))

    def chain(i: int) -> list[str]:
        names = []
        parent = parents[i]
        while parent is not None:
            names.append(rows[parent][1])
            parent = parents[parent]
        return names

    near_top = [(i, m, s, c) for i, (indent, m, s, c) in enumerate(rows) if indent <= 3 and not m.startswith("encodings")]
    near_top.sort(key=lambda row: -row[3])
    top: list[dict[str, Any]] = [
        {"module": m, "cumulative_ms": round(c / 1000, 1), "self_ms": round(s / 1000, 1), "imported_by": chain(i)[:4]}
        for i, m, s, c in near_top
    ]
    # A package's cost: every row of it whose parent is outside it (pydantic v2 imports lazily, so
    # `pydantic` itself is cheap and the cost shows under pydantic.main, pydantic_core, ...).
    heavy: dict[str, dict[str, Any]] = {}
    for i, (_, module, _, cumulative) in enumerate(rows):
        package = module.split(".")[0].removesuffix("_core")
        parent = parents[i]
        if package not in HEAVY_MODULES or (parent is not None and
                                            rows[parent][1].split(".")[0].removesuffix("_core") == package):
            continue
        entry = heavy.setdefault(package, {"module": package, "cumulative_ms": 0.0, "imported_by": chain(i)})
        entry["cumulative_ms"] = round(entry["cumulative_ms"] + cumulative / 1000, 1)
    return top[:15], sorted(heavy.values(), key=lambda item: -item["cumulative_ms"])


def measure_validate(spec: Path, repeat: int) -> ValidateResult:
    runs = [run_process([*meshc_command(), "validate", str(spec)], meshc_env()) for _ in range(max(repeat, 5))]
    for run in runs:
        if run.returncode != 0:
            raise RuntimeError(f"meshc validate {spec} failed:\n{run.stderr}")
    profiled = run_process([sys.executable, "-X", "importtime", "-m", "meshc.cli", "validate", str(spec)], meshc_env())
    top, heavy = import_profile(profiled.stderr)
    return ValidateResult(str(spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec),
                          min(r.seconds for r in runs), [round(r.seconds, 4) for r in runs],
                          max(r.max_rss_kib for r in runs), top, heavy)


# --- targets ------------------------------------------------------------------------------------

def check(report: Report, name: str, value: float | None, limit: float, unit: str = "") -> None:
    ok = value is not None and value <= limit
    report.checks.append({"check": name, "value": value, "limit": limit, "unit": unit, "ok": ok})


def check_targets(report: Report) -> None:
    by_n = {r.n: r for r in report.sizes}
    if 1000 in by_n:
        check(report, "N=1,000 build time", by_n[1000].meshc_seconds, TARGET_1K_SECONDS, "s")
        check(report, "N=1,000 meshc/floor", by_n[1000].ratio, TARGET_FLOOR_RATIO, "x")
        if by_n[1000].tmpfs is not None:
            check(report, "N=1,000 meshc/floor on tmpfs", by_n[1000].tmpfs.ratio, TARGET_TMPFS_FLOOR_RATIO, "x")
    if 10_000 in by_n:
        check(report, "N=10,000 meshc/floor", by_n[10_000].ratio, TARGET_FLOOR_RATIO, "x")
        check(report, "N=10,000 peak RSS (largest process)", by_n[10_000].meshc_max_rss_kib / 1024,
              TARGET_10K_RSS_KIB / 1024, "MiB")
        check(report, "N=10,000 peak memory (all processes, PSS)", by_n[10_000].meshc_tree_pss_kib / 1024,
              TARGET_10K_RSS_KIB / 1024, "MiB")
    if 1000 in by_n and 10_000 in by_n:
        check(report, "growth 10k/1k", by_n[10_000].meshc_seconds / by_n[1000].meshc_seconds, TARGET_GROWTH, "x")
    if report.validate is not None:
        check(report, "validate small spec", report.validate.seconds, TARGET_VALIDATE_SECONDS, "s")
    for baseline in report.baselines:
        if baseline.get("seconds"):
            # Speedups must reach 4x; checked as "slowdown of meshc" = 1/speedup <= 1/4.
            check(report, f"{baseline['name']} end-to-end speedup (as 1/speedup)", 1 / baseline["speedup"],
                  1 / TARGET_BASELINE_SPEEDUP, "x")
            check(report, f"{baseline['name']} compute-only speedup (as 1/speedup)", 1 / baseline["compute_speedup"],
                  1 / TARGET_BASELINE_SPEEDUP, "x")


# --- output -------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "meshc"], capture_output=True,
                           text=True, check=False).stdout.strip()
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": _cpu_model(), "commit": commit, "meshc_tree_dirty": bool(dirty),
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "meshc_build_args": BUILD_ARGS}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(report: Report) -> None:
    print(f"machine: {report.machine['cpus']} cpus, {report.machine['processor']}, Python {report.machine['python']}, "
          f"commit {report.machine['commit']}{' (meshc/ modified)' if report.machine['meshc_tree_dirty'] else ''}")
    print(f"{'N':>7} {'spec KB':>8} {'files':>6} {'out MB':>7} {'meshc s':>8} {'floor s':>8} {'ratio':>6} {'paired':>6} "
          f"{'RSS MiB':>8} {'PSS MiB':>8} {'meshc cpu':>9} {'floor cpu':>9} {'compile s':>9}")
    for r in report.sizes:
        print(f"{r.n:>7} {r.spec_bytes / 1024:>8.0f} {r.files:>6} {r.output_bytes / 1e6:>7.1f} {r.meshc_seconds:>8.3f} "
              f"{r.floor_seconds:>8.3f} {r.ratio:>6.2f} {r.paired_ratio:>6.2f} {r.meshc_max_rss_kib / 1024:>8.0f} {r.meshc_tree_pss_kib / 1024:>8.0f} "
              f"{r.meshc_cpu_seconds:>9.3f} {r.floor_cpu_seconds:>9.3f} {r.compile_seconds:>9.3f}")
    tmpfs = [(r, r.tmpfs) for r in report.sizes if r.tmpfs is not None]
    if tmpfs:
        print(f"\nthe same, build and floor both writing to a tmpfs ({tmpfs[0][1].directory}), beside the disk:")
        print(f"{'N':>7} {'meshc s':>8} {'floor s':>8} {'ratio':>6} {'paired':>6} {'meshc cpu':>9} {'floor cpu':>9} "
              f"{'parse s':>8} {'write s':>8} {'disk ratio':>10} {'disk paired':>11}")
        for r, t in tmpfs:
            print(f"{r.n:>7} {t.meshc_seconds:>8.3f} {t.floor_seconds:>8.3f} {t.ratio:>6.2f} {t.paired_ratio:>6.2f} "
                  f"{t.meshc_cpu_seconds:>9.3f} {t.floor_cpu_seconds:>9.3f} {t.floor_parse_seconds:>8.3f} {t.floor_write_seconds:>8.3f} "
                  f"{r.ratio:>10.2f} {r.paired_ratio:>11.2f}")
        for r, t in tmpfs:
            base = t.baseline
            if base is not None:
                print(f"  N={r.n} baseline {base.tree}: best {base.seconds:.3f} s, paired {base.paired_ratio:.2f}x the "
                      f"floor; this tree / baseline: {base.vs_baseline:.3f}x wall, {base.vs_baseline_cpu:.3f}x CPU "
                      f"(medians of {len(base.runs)} rounds; CPU best {t.meshc_cpu_seconds:.3f} s against "
                      f"{base.cpu_seconds:.3f} s)")
    if report.file_create_us:
        print(f"creating one empty file took {min(report.file_create_us):.0f}-{max(report.file_create_us):.0f} us "
              f"during the run (probes: {', '.join(f'{u:.0f}' for u in report.file_create_us)})")
    if report.validate:
        v = report.validate
        print(f"\nmeshc validate {v.spec}: {v.seconds:.3f} s, {v.max_rss_kib / 1024:.0f} MiB")
        print("  heavy packages imported (python -X importtime; cumulative, and who pulled them in):")
        for item in v.heavy_imported:
            print(f"    {item['module']:<18} {item['cumulative_ms']:>7.1f} ms  <- {' <- '.join(item['imported_by'])}")
        print("  costliest imports near the top:")
        for item in v.top_imports[:10]:
            print(f"    {item['module']:<40} {item['cumulative_ms']:>7.1f} ms  <- {' <- '.join(item['imported_by'])}")
    for b in report.baselines:
        if b.get("seconds"):
            print(f"\nbaseline {b['name']} ({b['implementation']}), N={b['n']}: {b['objects']} documents "
                  f"(meshc {b['meshc_objects']}), {b['bytes'] / 1e6:.1f} MB ({b['byte_ratio']:.3f}x meshc's bytes)\n"
                  f"    end to end: evaluate {b['evaluate_seconds']:.2f} s + write {b['write_seconds']:.2f} s = "
                  f"{b['seconds']:.2f} s vs meshc build {b['meshc_seconds']:.2f} s: meshc {b['speedup']:.1f}x faster\n"
                  f"    compute only: {b['evaluate_seconds']:.2f} s vs meshc compile {b['meshc_compile_seconds']:.2f} s: "
                  f"meshc {b['compute_speedup']:.1f}x faster")
        else:
            print(f"\nbaseline {b['name']}: not measured: {b.get('error')}")
    print()
    for c in report.checks:
        value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        print(f"{'PASS' if c['ok'] else 'FAIL'}  {c['check']}: {value} {c['unit']} (limit {c['limit']:.3f})")


def write_json(report: Report, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"build-{stamp}.json"
    text = json.dumps(asdict(report), indent=2) + "\n"
    path.write_text(text)
    (directory / "build-latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time meshc build against the floor; check the targets")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="values of N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="runs per N below 10,000; the best is kept")
    parser.add_argument("--repeat-large", type=int, default=3, help="runs for N >= 10,000")
    parser.add_argument("--no-validate", action="store_true", help="skip the small-spec validate timing")
    parser.add_argument("--baselines", action="store_true", help="also time the Jsonnet and KCL programs")
    parser.add_argument("--baseline-n", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a new temp dir)")
    parser.add_argument("--meshc-jobs", type=int, default=None, metavar="N",
                        help="run `meshc build --jobs N` (default: meshc's own default, the usable CPUs)")
    parser.add_argument("--tmpfs", type=Path, default=None, metavar="DIR",
                        help="also build and floor into a new directory here (default: /dev/shm when it exists)")
    parser.add_argument("--no-tmpfs", action="store_true", help="measure writing to the disk only")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="also time another checkout's meshc build (PYTHONPATH=DIR) in the tmpfs alternation")
    parser.add_argument("--report-only", action="store_true",
                        help="report the targets but exit 0 even when one is missed (for the test suite)")
    args = parser.parse_args(argv)
    if args.meshc_jobs is not None:
        BUILD_ARGS[:] = ["--jobs", str(args.meshc_jobs)]
    if args.baseline is not None:
        if not (args.baseline / "meshc" / "cli.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: not a meshc checkout (no meshc/cli.py)")
        BASELINE[:] = [args.baseline.resolve()]

    tmpfs = tmpfs_directory(args.tmpfs, args.no_tmpfs)
    work = Path(tempfile.mkdtemp(prefix="meshc-bench-", dir=args.workdir))
    report = Report(machine=machine())
    try:
        for n in args.sizes:
            repeat = args.repeat_large if n >= 10_000 else args.repeat
            report.file_create_us.append(round(file_create_probe(work), 1))
            report.sizes.append(measure_size(n, args.seed, repeat, work, tmpfs))
            report.file_create_us.append(round(file_create_probe(work), 1))
            r = report.sizes[-1]
            on_tmpfs = "" if r.tmpfs is None else f"; on tmpfs {r.tmpfs.meshc_seconds:.3f} s / {r.tmpfs.floor_seconds:.3f} s"
            print(f"N={n}: meshc {r.meshc_seconds:.3f} s, floor {r.floor_seconds:.3f} s{on_tmpfs}", file=sys.stderr)
        if not args.no_validate:
            report.validate = measure_validate(SMALL_SPEC, args.repeat)
        if args.baselines:
            from bench.baselines import run as baselines

            report.baselines = baselines.measure_all(args.baseline_n, args.seed, args.repeat, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    check_targets(report)
    print_table(report)
    path = write_json(report, args.results)
    print(f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0 if args.report_only or all(c["ok"] for c in report.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
