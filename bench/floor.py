"""The floor a build cannot beat: parse the spec with libyaml and write the same output files.

What `meshc build` must do at the very least is read its input and write its output. The floor does
exactly that and nothing else: `yaml.load(text, Loader=yaml.CSafeLoader)` on the same spec, then the
same files (same relative paths, same bytes, same count, taken from a real meshc output directory)
written into a fresh directory. The reference files are read into memory before the clock starts.

    python bench/floor.py SPEC REFERENCE_OUT [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

# The cheapest way Python has to write a file (a descriptor and os.write, no buffered file object):
# the floor writes as meshc does.
from meshc.bundle.store import write_file

Files = dict[str, bytes]


@dataclass(frozen=True)
class FloorRun:
    seconds: float
    cpu_seconds: float       # user + system time of this process during the run
    parse_seconds: float
    write_seconds: float
    files: int
    bytes: int


def read_tree(root: str | os.PathLike[str]) -> Files:
    """Every file under root as relative path -> bytes, in sorted order."""
    base = Path(root)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def write_tree(files: Files, root: Path) -> None:
    """Write files under a fresh root, creating each directory once (as a careful writer would)."""
    made: set[str] = set()
    for rel, data in files.items():
        parent = os.path.dirname(rel)
        if parent not in made:
            os.makedirs(os.path.join(root, parent), exist_ok=True)
            made.add(parent)
        write_file(os.path.join(root, rel), data)


def set_aside(path: Path, trash: Path | None) -> None:
    """Get rid of a finished output. With a trash directory, only move it there (one rename):
    deleting hundreds of MB on a filesystem mounted with `discard` slows the file creations that
    follow, which would land in the next timed run. Whoever owns the trash empties it afterwards."""
    if trash is None:
        shutil.rmtree(path)
        return
    trash.mkdir(parents=True, exist_ok=True)
    os.rename(path, Path(tempfile.mkdtemp(prefix="old-", dir=trash)) / path.name)


def run_once(spec: str | os.PathLike[str], files: Files, scratch: Path, trash: Path | None = None) -> FloorRun:
    """One timed floor run; the output goes to a directory that does not exist yet."""
    out = Path(tempfile.mkdtemp(prefix="floor-", dir=scratch)) / "out"
    cpu_start = _cpu()
    start = time.perf_counter()
    with open(spec, "rb") as handle:
        text = handle.read()
    yaml.load(text, Loader=yaml.CSafeLoader)
    parsed = time.perf_counter()
    write_tree(files, out)
    end = time.perf_counter()
    cpu = _cpu() - cpu_start
    set_aside(out, trash)
    os.rmdir(out.parent)
    return FloorRun(end - start, cpu, parsed - start, end - parsed, len(files), sum(len(d) for d in files.values()))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(spec: str | os.PathLike[str], reference_out: str | os.PathLike[str], repeat: int = 5,
            scratch: str | os.PathLike[str] | None = None) -> FloorRun:
    """Best of `repeat` floor runs (the least disturbed one)."""
    files = read_tree(reference_out)
    if not files:
        raise ValueError(f"{reference_out} holds no files; give a meshc build output directory")
    work = Path(tempfile.mkdtemp(prefix="meshc-floor-", dir=scratch))
    try:
        return min((run_once(spec, files, work) for _ in range(repeat)), key=lambda r: r.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time the floor: libyaml parse + writing the same files")
    parser.add_argument("spec", help="the mesh.yaml that was built")
    parser.add_argument("reference", help="a meshc build output directory of that spec")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported (default 5)")
    args = parser.parse_args(argv)
    run = measure(args.spec, args.reference, args.repeat)
    print(f"floor: {run.seconds:.3f} s (parse {run.parse_seconds:.3f} s, write {run.write_seconds:.3f} s) "
          f"for {run.files} files, {run.bytes} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
