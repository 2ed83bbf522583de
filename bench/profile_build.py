"""Where `meshc build` spends its time: wall time per pipeline stage, then a cProfile of the whole build.

The stages are timed by calling the pipeline's own functions in the order meshc.pipeline runs them
(load, structure, semantics, resolve, analyze, emit per target, bundle, write); the profile runs the
real CLI entry point. Numbers are for one run in this process, imports already done.

    python -m bench.profile_build 1000                  # stage table + top 25 functions by own time
    python -m bench.profile_build 10000 --top 40 --sort cumulative
    python -m bench.profile_build 1000 --pyinstrument   # a call tree (needs pyinstrument)
    python -m bench.profile_build 1000 --workdir /tmp   # write to the disk instead of /dev/shm
    python -m bench.profile_build 1000 --timeline 7     # when each stage ends in a real build, parent and worker
    python -m bench.profile_build 1000 --timeline 7 --tree /tmp/meshc-before    # the same for another checkout
    python -m bench.profile_build 1000 --timeline 15 --against /tmp/meshc-before # both, alternating: paired CPU per stage
    python -m bench.profile_build 1000 --instructions --against /tmp/meshc-before  # instructions per stage (valgrind)

Outputs are written to a tmpfs (/dev/shm) when the machine has one, so that the write stages show
meshc's own work rather than the disk's mood; --workdir chooses another place.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_mesh

Row = tuple[str, float, int]     # stage, seconds, resident MiB after it


def _rss_mib() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
    except OSError:
        return 0


def _timed(table: list[Row], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    table.append((name, time.perf_counter() - start, _rss_mib()))
    return result


def stage_times(spec: Path, out: Path) -> list[Row]:
    """Seconds (and resident memory) per stage of one build, using the same functions as
    meshc.pipeline, with the cyclic GC off as `meshc build` has it."""
    from meshc import render
    from meshc.analysis import analyze
    from meshc.bundle import make_bundle, render_files, write_bundle
    from meshc.emit import envoy, etcd, kubernetes, naming
    from meshc.load import load_yaml, read_spec_file
    from meshc.pipeline import BuildOptions, check, write_build
    from meshc.resolve import resolve
    from meshc.validate.semantic import check_semantics
    from meshc.validate.structural import check_structure

    table: list[Row] = []
    options = BuildOptions()
    gc.disable()
    source = _timed(table, "read spec", lambda: read_spec_file(str(spec)))
    loaded = _timed(table, "load (YAML -> data + positions)", lambda: load_yaml(source))
    model, _ = _timed(table, "validate: structure (pydantic)", lambda: check_structure(loaded.data, loaded.positions))
    _timed(table, "validate: semantic checks", lambda: check_semantics(model, loaded.positions))
    mesh = _timed(table, "resolve (IR)", lambda: resolve(model, loaded.positions))
    _timed(table, "analyze", lambda: analyze(mesh))
    envoy_docs = _timed(table, "emit envoy (documents)", lambda: envoy.emit(mesh, options.config_dir))
    files = _timed(table, "render envoy (orjson)", lambda: render_files(envoy_docs))
    sidecars = {s.name: {f: files[naming.envoy_path(s.name, f)] for f in naming.ENVOY_FILES}
                for s in mesh.deployed_services}
    k8s_docs = _timed(table, "emit kubernetes (documents)", lambda: kubernetes.emit(mesh, sidecars))
    files |= _timed(table, "render kubernetes (orjson)", lambda: render_files(k8s_docs))
    etcd_docs = _timed(table, "emit etcd", lambda: etcd.emit(mesh))
    files |= _timed(table, "render etcd", lambda: render_files(etcd_docs))
    bundle = _timed(table, "bundle (manifest, sha256)", lambda: make_bundle(
        files, mesh=mesh.name, spec_digest=render.sha256(source.data), revision=source.revision))
    _timed(table, "write output (staging dir + rename)", lambda: write_bundle(bundle, out))
    checked = check(source)
    for jobs in (1, 2):
        shutil.rmtree(out, ignore_errors=True)
        _timed(table, f"as meshc build: write_build, --jobs {jobs}", lambda: write_build(checked, out, options, jobs))
    gc.enable()
    return table


def profile_cli(spec: Path, out: Path, sort: str, top: int) -> str:
    from meshc.cli import main

    profiler = cProfile.Profile()
    profiler.enable()
    code = main(["build", str(spec), "-o", str(out), "--jobs", "1"])   # the profiler sees this process only
    profiler.disable()
    if code != 0:
        raise SystemExit(f"meshc build exited {code}")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(sort).print_stats(top)
    return text.getvalue()


def pyinstrument_cli(spec: Path, out: Path) -> str:
    from pyinstrument import Profiler

    from meshc.cli import main

    profiler = Profiler(interval=0.001)
    profiler.start()
    main(["build", str(spec), "-o", str(out), "--jobs", "1"])
    profiler.stop()
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    return text


# --- a real build's timeline ---------------------------------------------------------------------

# Run in a fresh interpreter: `meshc build` as the command runs it (meshc.cli.run), with the
# pipeline's stage functions wrapped (as the command imports them) to note when each starts and
# ends, in the parent and in the build workers (each reports when it leaves). Times are seconds since T0, taken by the runner
# just before it started the interpreter, so Python's own start is included.
_TIMELINE_CHILD = r"""
import atexit, importlib.abc, importlib.util, os, sys, time
T0 = float(os.environ["MESHC_TIMELINE_T0"])
PARENT = os.getpid()
marks = []
def mark(name):
    marks.append((name, os.getpid(), time.time() - T0, time.process_time()))
def dump():
    who = "parent" if os.getpid() == PARENT else "worker"
    sys.stderr.write("".join(f"@@ {who}|{n}|{t:.6f}|{c:.6f}\n" for n, pid, t, c in marks if pid == os.getpid()))
mark("interpreter started")
def wrap(owner, name, label):
    real = getattr(owner, name, None) if owner is not None else None
    if real is None:     # another version of meshc (MESHC_TIMELINE_TREE) may lack it
        return
    def wrapped(*args, **kwargs):
        mark(label + " start")
        try:
            return real(*args, **kwargs)
        finally:
            mark(label + " end")
    setattr(owner, name, wrapped)
WRAPPED = {
    "meshc.pipeline": [(None, "load_yaml", "load"), (None, "check_structure", "structure"),
                       (None, "check_semantics", "semantics"), (None, "resolve", "resolve"),
                       (None, "analyze", "analyze"), (None, "check_sizes", "size checks"), (None, "check", "check"),
                       (None, "write_build", "write_build"), (None, "_write_units", "manifest and commit")],
    "meshc.bundle.shards": [(None, "_take", "units"), (None, "_write_shard", "units"), ("Crew", "fork", "workers forked"),
                            ("_Worker", "start", "worker forked"), ("_Worker", "result", "worker's report")],
}
class Wrapper(importlib.abc.MetaPathFinder):
    # The stages are wrapped as their modules are imported, where the command imports them: the
    # command's own start-up (light models, code cache) is what is timed.
    def find_spec(self, fullname, path, target=None):
        if fullname not in WRAPPED:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        real_exec = spec.loader.exec_module
        def exec_module(module):
            real_exec(module)
            mark(fullname + " imported")
            for owner, name, label in WRAPPED[fullname]:
                wrap(getattr(module, owner, None) if owner else module, name, label)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Wrapper())
real_exit = os._exit
def leaving(code):     # a worker's end, and the command's own when it ends without a teardown
    mark("exit")
    dump()
    real_exit(code)
os._exit = leaving
atexit.register(lambda: (mark("exit"), dump()) if os.getpid() == PARENT and sys.modules.get("meshc.cli")
                and not hasattr(sys.modules["meshc.cli"], "end_process") else None)
import meshc.cli
sys.argv = ["meshc", *sys.argv[1:]]
meshc.cli.run()
"""


# --- instructions per stage, under valgrind ------------------------------------------------------

# Run under `valgrind --tool=callgrind --dump-before=getppid`: every os.getppid() below closes one
# part of the profile, so each part holds the instructions of one stage. Instructions do not
# depend on what else the machine runs, where times on a busy 2-core machine swing by 10-20%:
# two trees' counts compare the work each does, stage by stage (not the cost of a cache miss or a
# page fault, which they leave out).
_INSTRUCTIONS_CHILD = r"""
import gc, hashlib, os, sys
gc.disable()
from meshc.load import load_yaml, read_spec_file
from meshc.validate.structural import check_structure
from meshc.validate.semantic import check_semantics
from meshc.resolve import resolve
from meshc.analysis import analyze
from meshc.pipeline import BuildOptions, build_units, check_sizes
from meshc.emit import envoy, etcd, kubernetes
os.getppid()
source = read_spec_file(sys.argv[1])
loaded = load_yaml(source)
os.getppid()
model, _ = check_structure(loaded.data, loaded.positions)
os.getppid()
check_semantics(model, loaded.positions)
os.getppid()
mesh = resolve(model, loaded.positions)
os.getppid()
analyze(mesh)
check_sizes(mesh)
os.getppid()
for unit in build_units(mesh, BuildOptions()):
    for path, data in unit():
        hashlib.sha256(data).hexdigest()
os.getppid()
"""
_INSTRUCTION_PARTS = ("imports", "load", "structure", "semantics", "resolve", "analysis and size checks",
                      "emit, render, hash (every unit, one process)")


def instructions(spec: Path, tree: Path | None) -> list[int]:
    """Instructions of each part of _INSTRUCTIONS_CHILD in one tree (this one without `tree`)."""
    import re
    import subprocess

    from bench.run_build import meshc_env

    env = meshc_env() if tree is None else meshc_env(tree)
    with tempfile.TemporaryDirectory(prefix="meshc-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
                        sys.executable, "-c", _INSTRUCTIONS_CHILD, str(spec)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        parts = sorted(Path(scratch).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        counts = [int(re.search(r"^summary: (\d+)", part.read_text(), re.M).group(1))  # type: ignore[union-attr]
                  for part in parts]
    return counts[:len(_INSTRUCTION_PARTS)]


def instructions_against(spec: Path, other: Path) -> str:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:    # two valgrind processes: one per core
        mine, theirs = pool.map(lambda tree: instructions(spec, tree), (None, other))
    lines = [f"{'instructions, millions':<46} {'this':>8} {'other':>8} {'diff':>8} {'ratio':>7}"]
    for name, a, b in zip(_INSTRUCTION_PARTS, mine, theirs):
        lines.append(f"{name:<46} {a / 1e6:8.1f} {b / 1e6:8.1f} {(a - b) / 1e6:+8.1f} {a / b:7.3f}x")
    lines.append(f"{'before the units (serial in a build)':<46} {sum(mine[1:5]) / 1e6:8.1f} {sum(theirs[1:5]) / 1e6:8.1f} "
                 f"{(sum(mine[1:5]) - sum(theirs[1:5])) / 1e6:+8.1f} {sum(mine[1:5]) / sum(theirs[1:5]):7.3f}x")
    return "\n".join(lines)


def _timeline_run(spec: Path, out: Path, tree: Path | None) -> dict[str, tuple[float, float]]:
    """One build's marks: (seconds since the interpreter was started, CPU seconds of that process)."""
    import subprocess

    from bench.run_build import meshc_env

    shutil.rmtree(out, ignore_errors=True)
    env = meshc_env() if tree is None else meshc_env(tree)
    env["MESHC_TIMELINE_T0"] = repr(time.time())
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _TIMELINE_CHILD, "build", str(spec), "-o", str(out)], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"meshc build failed:\n{done.stderr}")
    marks: dict[str, tuple[float, float]] = {}
    seen: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if line.startswith("@@ "):
            who, name, at, cpu = line[3:].split("|")
            key = f"{who}: {name}"
            seen[key] = seen.get(key, 0) + 1
            key += f" ({seen[key]})" if seen[key] > 1 else ""
            marks[key] = (float(at), float(cpu))
    marks["(runner) process ended"] = (wall, float("nan"))
    return marks


def timeline(spec: Path, out: Path, runs: int, tree: Path | None = None) -> str:
    """Medians over `runs` builds of when each stage starts and ends (ms since the interpreter was
    started), with the CPU time of that process so far; the runner's own wall time last. `tree`:
    another meshc checkout to run instead of this one (stages it lacks are left out)."""
    import statistics

    rows: dict[str, list[tuple[float, float]]] = {}
    for _ in range(runs):
        for key, value in _timeline_run(spec, out, tree).items():
            rows.setdefault(key, []).append(value)
    lines = [f"{'':<44} {'ms':>7} {'CPU ms':>7}   (medians of {runs} builds)"]
    for key, values in sorted(rows.items(), key=lambda kv: statistics.median(v[0] for v in kv[1])):
        at_ms = statistics.median(v[0] for v in values) * 1000
        cpu_ms = statistics.median(v[1] for v in values) * 1000
        lines.append(f"{key:<44} {at_ms:7.0f} {cpu_ms:7.0f}" if cpu_ms == cpu_ms else f"{key:<44} {at_ms:7.0f}")
    return "\n".join(lines)


# The parent's marks compared by --against: the serial part ends when the workers are forked; the
# last stretch, from the end of the writing to the exit, runs with nothing beside it.
_COMPARED = ("parent: load end", "parent: structure end", "parent: semantics end", "parent: resolve end",
             "parent: workers forked start", "parent: write_build end", "parent: exit")


def timeline_against(spec: Path, out: Path, runs: int, other: Path) -> str:
    """This tree's builds and another checkout's, alternating (the order swapped every round): per
    mark of the parent, the median CPU ms of each and the median of the paired differences, so that
    a few milliseconds' change before the fork shows through a busy machine's noise."""
    import statistics

    mine: list[dict[str, tuple[float, float]]] = []
    theirs: list[dict[str, tuple[float, float]]] = []
    for round_ in range(runs):
        if round_ % 2 == 0:
            mine.append(_timeline_run(spec, out, None))
            theirs.append(_timeline_run(spec, out, other))
        else:
            theirs.append(_timeline_run(spec, out, other))
            mine.append(_timeline_run(spec, out, None))
    lines = [f"{'parent, CPU ms since start':<32} {'this':>7} {'other':>7} {'paired diff':>12} {'paired ratio':>13}"
             f"   ({runs} rounds, alternating)"]
    for key in _COMPARED:
        pairs = [(a[key][1], b[key][1]) for a, b in zip(mine, theirs) if key in a and key in b]
        if not pairs:
            continue
        this = statistics.median(a for a, _ in pairs) * 1000
        that = statistics.median(b for _, b in pairs) * 1000
        diff = statistics.median(a - b for a, b in pairs) * 1000
        ratio = statistics.median(a / b for a, b in pairs)
        lines.append(f"{key:<32} {this:7.0f} {that:7.0f} {diff:+12.1f} {ratio:12.3f}x")
    ends = ("parent: write_build end", "parent: exit")
    stretches = [tuple(run[ends[1]][1] - run[ends[0]][1] for run in pair) for pair in zip(mine, theirs)
                 if all(end in run for run in pair for end in ends)]
    if stretches:   # CPU of the last stretch alone: the process's exit after the writing
        lines.append(f"{'  the last stretch (CPU ms)':<32} {statistics.median(a for a, _ in stretches) * 1000:7.1f} "
                     f"{statistics.median(b for _, b in stretches) * 1000:7.1f} "
                     f"{statistics.median(a - b for a, b in stretches) * 1000:+12.1f}")
    walls = [(a["(runner) process ended"][0], b["(runner) process ended"][0]) for a, b in zip(mine, theirs)]
    lines.append(f"{'(runner) wall, ms':<32} {statistics.median(a for a, _ in walls) * 1000:7.0f} "
                 f"{statistics.median(b for _, b in walls) * 1000:7.0f} "
                 f"{statistics.median(a - b for a, b in walls) * 1000:+12.1f} "
                 f"{statistics.median(a / b for a, b in walls):12.3f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time meshc build per stage and profile it")
    parser.add_argument("services", type=int, help="N, the size of the generated mesh")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument call tree too")
    parser.add_argument("--no-cprofile", action="store_true")
    parser.add_argument("--timeline", type=int, default=0, metavar="RUNS",
                        help="instead: when each stage of a real `meshc build` ends, parent and workers (medians)")
    parser.add_argument("--tree", type=Path, default=None, metavar="DIR",
                        help="with --timeline: time another meshc checkout's build (PYTHONPATH=DIR)")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="with --timeline: alternate with another checkout's builds; paired CPU per stage")
    parser.add_argument("--instructions", action="store_true",
                        help="with --against: instructions per stage of this tree and DIR's, counted by valgrind "
                        "(callgrind), which the machine's load does not change")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the spec and outputs go (default: /dev/shm when it exists, else the temp dir)")
    args = parser.parse_args(argv)

    shm = Path("/dev/shm")
    workdir = args.workdir or (shm if shm.is_dir() and os.access(shm, os.W_OK) else None)
    work = Path(tempfile.mkdtemp(prefix="meshc-profile-", dir=workdir))
    print(f"writing under {work}")
    try:
        spec = work / f"mesh-{args.services}.yaml"
        spec.write_text(gen_mesh.generate(args.services, args.seed), encoding="utf-8")
        if args.instructions and args.against:
            print(instructions_against(spec, args.against))
            return 0
        if args.timeline and args.against:
            print(timeline_against(spec, work / "timeline", args.timeline, args.against))
            return 0
        if args.timeline:
            print(timeline(spec, work / "timeline", args.timeline, args.tree))
            return 0
        table = stage_times(spec, work / "stages")
        stages, builds = table[:-2], table[-2:]
        total = sum(seconds for _, seconds, _ in stages)
        print(f"stages of one build, N={args.services} (imports excluded; resident MiB after each stage):")
        for name, seconds, rss in stages:
            print(f"  {name:<38} {seconds:8.3f} s  {100 * seconds / total:5.1f} %  {rss:6d} MiB")
        print(f"  {'total':<38} {total:8.3f} s")
        print("emit, render and write in one go, from the checked spec (files dropped once written):")
        for name, seconds, rss in builds:
            print(f"  {name:<38} {seconds:8.3f} s           {rss:6d} MiB")
        if not args.no_cprofile:
            print()
            print(profile_cli(spec, work / "profiled", args.sort, args.top))
        if args.pyinstrument:
            shutil.rmtree(work / "profiled", ignore_errors=True)
            print(pyinstrument_cli(spec, work / "profiled"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
