"""Where `meshc build` spends its time: wall time per pipeline stage, then a cProfile of the whole build.

The stages are timed by calling the pipeline's own functions in the order meshc.pipeline runs them
(load, structure, semantics, resolve, analyze, emit per target, bundle, write); the profile runs the
real CLI entry point. Numbers are for one run in this process, imports already done.

    python -m bench.profile_build 1000                  # stage table + top 25 functions by own time
    python -m bench.profile_build 10000 --top 40 --sort cumulative
    python -m bench.profile_build 1000 --pyinstrument   # a call tree (needs pyinstrument)
    python -m bench.profile_build 1000 --workdir /tmp   # write to the disk instead of /dev/shm

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time meshc build per stage and profile it")
    parser.add_argument("services", type=int, help="N, the size of the generated mesh")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument call tree too")
    parser.add_argument("--no-cprofile", action="store_true")
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
