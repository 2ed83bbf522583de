"""What zero trust costs a build: `meshc build` at N services with strict mTLS (the default)
against the same mesh with `security: {mtls: off}`.

Both specs come from bench/gen_mesh.py (same seed; the off one gains one line). Builds alternate
(strict, off, strict, off, ...) so both see the same machine, into output directories that do not
exist yet. Reports best-of times, CPU times, output size and file count, the paired ratio (median
of strict / off over neighbouring runs, which a shared disk's slow periods disturb least), and the
CPU time of compiling alone in this process (no disk).

    python -m bench.zero_trust                 # N = 1,000, 7 pairs
    python -m bench.zero_trust --size 200 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):     # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_mesh
from bench.run_build import build_once

TARGET_RATIO = 1.2
OFF_LINE = "  security: {mtls: off}\n"


def specs(n: int, seed: int, work: Path) -> tuple[Path, Path]:
    text = gen_mesh.generate(n, seed)
    strict, off = work / "strict.yaml", work / "off.yaml"
    strict.write_text(text, encoding="utf-8")
    head, sep, tail = text.partition("\nspec:\n")
    assert sep, "the generated spec has a top-level spec:"
    off.write_text(head + sep + OFF_LINE + tail, encoding="utf-8")
    return strict, off


def compile_cpu(spec: Path) -> float:
    """CPU seconds of check + emit + render in this process, without the disk: the compiler's own
    share of the difference, which other load on the machine disturbs least."""
    import gc
    import time

    from meshc.load import read_spec_file
    from meshc.pipeline import BuildOptions, check, iter_files

    source = read_spec_file(str(spec))
    gc.collect()
    started = time.process_time()
    checked = check(source)
    assert checked.mesh is not None
    sum(len(data) for _, data in iter_files(checked.mesh, BuildOptions()))
    return time.process_time() - started


def output_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7, help="pairs of builds (default 7)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="meshc-zt-bench-"))
    try:
        strict_spec, off_spec = specs(args.size, args.seed, work)
        runs: dict[str, list[tuple[float, float]]] = {"strict": [], "off": []}
        sizes: dict[str, int] = {}
        files: dict[str, int] = {}
        for attempt in range(args.repeat):
            for mode, spec in (("strict", strict_spec), ("off", off_spec)):
                out = work / f"out-{mode}-{attempt}"
                run = build_once(spec, out)
                runs[mode].append((run.seconds, run.cpu_seconds))
                sizes[mode] = output_bytes(out)
                files[mode] = sum(1 for p in out.rglob("*") if p.is_file())
                shutil.rmtree(out)
        compiled: dict[str, list[float]] = {"strict": [], "off": []}
        for _ in range(args.repeat):
            for mode, spec in (("strict", strict_spec), ("off", off_spec)):
                compiled[mode].append(compile_cpu(spec))
        best = {mode: min(s for s, _ in values) for mode, values in runs.items()}
        cpu = {mode: min(c for _, c in values) for mode, values in runs.items()}
        paired = statistics.median(s / o for (s, _), (o, _) in zip(runs["strict"], runs["off"], strict=True))
        result = {
            "services": args.size, "pairs": args.repeat,
            "best_seconds": best, "best_cpu_seconds": cpu, "output_bytes": sizes,
            "ratio_best": best["strict"] / best["off"], "ratio_cpu": cpu["strict"] / cpu["off"],
            "ratio_paired": paired, "target": TARGET_RATIO,
            "compile_cpu_seconds": {mode: min(values) for mode, values in compiled.items()},
            "ratio_compile_cpu": min(compiled["strict"]) / min(compiled["off"]),
            "files": files,
        }
        print(json.dumps(result, indent=2))
        verdict = "met" if result["ratio_paired"] <= TARGET_RATIO else "NOT met"
        print(f"strict mTLS / off at N={args.size}: best {result['ratio_best']:.2f}x, cpu "
              f"{result['ratio_cpu']:.2f}x, paired {paired:.2f}x (target {TARGET_RATIO}x: {verdict}); "
              f"compile alone (CPU, no disk) {result['ratio_compile_cpu']:.2f}x")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
