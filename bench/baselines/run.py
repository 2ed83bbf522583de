"""Time the Jsonnet and KCL programs that do meshc's translation, next to `meshc build` on the same mesh.

Both programs (mesh.jsonnet, mesh.k) read the spec as JSON and return every Envoy and Kubernetes file
meshc writes, as text. Each is evaluated through its language's Python binding; the YAML-to-JSON
conversion before it is left out, which favours the baselines. Two comparisons are reported: end to end (evaluation plus writing the files it returned,
the way the floor writes them, against `meshc build`), and compute only (evaluation against meshc's
compile step in this process, no files written by either: this one does not depend on the disk).
The result is checked against meshc's output: same paths, and the byte ratio is reported.

    python -m bench.baselines.run 1000                 # go-jsonnet and KCL at N=1000
    python -m bench.baselines.run 100 --cpp-jsonnet    # also the C++ jsonnet binding (slow)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import floor, gen_mesh

HERE = Path(__file__).resolve().parent
JSONNET_PROGRAM = HERE / "mesh.jsonnet"
KCL_PROGRAM = HERE / "mesh.k"
COMPARED_PREFIXES = ("envoy/", "kubernetes/")   # what the baselines produce (not etcd/, manifest.json)

Evaluator = Callable[[Path], dict[str, str]]


def spec_as_json(spec: Path, target: Path) -> Path:
    target.write_text(json.dumps(yaml.load(spec.read_bytes(), Loader=yaml.CSafeLoader)))
    return target


def go_jsonnet(mesh_json: Path) -> dict[str, str]:
    import _gojsonnet  # type: ignore[import-not-found]

    text = _gojsonnet.evaluate_file(str(JSONNET_PROGRAM), tla_codes={"mesh": f"import {json.dumps(str(mesh_json))}"})
    result: dict[str, str] = json.loads(text)
    return result


def cpp_jsonnet(mesh_json: Path) -> dict[str, str]:
    import _jsonnet  # type: ignore[import-untyped]

    text = _jsonnet.evaluate_file(str(JSONNET_PROGRAM), tla_codes={"mesh": f"import {json.dumps(str(mesh_json))}"})
    result: dict[str, str] = json.loads(text)
    return result


def kcl(mesh_json: Path) -> dict[str, str]:
    from kcl_lib import api  # type: ignore[import-untyped]

    # KCL's file.read only reads inside the program's own directory: run a copy beside the input.
    program = mesh_json.parent / KCL_PROGRAM.name
    shutil.copyfile(KCL_PROGRAM, program)
    args = api.ExecProgramArgs(k_filename_list=[str(program)],
                               args=[api.Argument(name="mesh_file", value=mesh_json.name)])
    result = api.API().exec_program(args)
    if result.err_message:
        raise RuntimeError(result.err_message)
    files: dict[str, str] = json.loads(result.json_result)["files"]
    return files


IMPLEMENTATIONS: dict[str, tuple[str, str, Evaluator]] = {
    "go-jsonnet": ("Jsonnet", "go-jsonnet (gojsonnet binding)", go_jsonnet),
    "cpp-jsonnet": ("Jsonnet", "C++ jsonnet (jsonnet binding)", cpp_jsonnet),
    "kcl": ("KCL", "KCL (kcl-lib binding)", kcl),
}


def _objects(files: dict[str, str] | dict[str, bytes]) -> int:
    """Envoy documents plus Kubernetes objects (documents of `---` streams)."""
    count = 0
    for text in files.values():
        data = text.encode() if isinstance(text, str) else text
        count += data.count(b"\n---\n") + 1
    return count


def measure(key: str, mesh_json: Path, reference: dict[str, bytes], meshc: dict[str, float], n: int,
            repeat: int, scratch: Path) -> dict[str, Any]:
    """One baseline: evaluation alone, and evaluation plus writing its files (as the floor writes them)."""
    language, implementation, evaluate = IMPLEMENTATIONS[key]
    entry: dict[str, Any] = {"name": language, "key": key, "implementation": implementation, "n": n,
                             "meshc_seconds": meshc["build"], "meshc_compile_seconds": meshc["compile"]}
    try:
        evaluations, writes = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            files = evaluate(mesh_json)
            evaluations.append(time.perf_counter() - start)
            out = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=scratch)) / "out"
            start = time.perf_counter()
            floor.write_tree({path: text.encode() for path, text in files.items()}, out)
            writes.append(time.perf_counter() - start)
            floor.set_aside(out, scratch / "trash")
            out.parent.rmdir()
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is reported, not fatal
        entry["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        return entry
    compared = {p: d for p, d in reference.items() if p.startswith(COMPARED_PREFIXES)}
    produced = sum(len(t.encode()) for t in files.values())
    expected = sum(len(d) for d in compared.values())
    best = min(range(repeat), key=lambda i: evaluations[i] + writes[i])
    entry |= {
        "evaluate_seconds": min(evaluations), "write_seconds": writes[best],
        "seconds": evaluations[best] + writes[best],
        "runs": [round(e + w, 3) for e, w in zip(evaluations, writes)],
        "files": len(files), "meshc_files": len(compared),
        "same_paths": sorted(files) == sorted(compared),
        "objects": _objects(files), "meshc_objects": _objects(compared),
        "bytes": produced, "meshc_bytes": expected, "byte_ratio": produced / expected,
        # End to end: the baseline's evaluation plus writing its files, against `meshc build`.
        "speedup": (evaluations[best] + writes[best]) / meshc["build"],
        # Compute only: evaluation against meshc's in-process compile (no files written by either).
        "compute_speedup": min(evaluations) / meshc["compile"],
    }
    return entry


def measure_all(n: int, seed: int, repeat: int, work: Path, keys: tuple[str, ...] = ("go-jsonnet", "kcl"),
                baseline_repeat: int = 1) -> list[dict[str, Any]]:
    """meshc build and compile (best of `repeat`) and each baseline on the same generated mesh."""
    from bench.run_build import build_once, meshc_compile_seconds

    scratch = Path(tempfile.mkdtemp(prefix="baselines-", dir=work))
    try:
        spec = scratch / f"mesh-{n}.yaml"
        spec.write_text(gen_mesh.generate(n, seed), encoding="utf-8")
        mesh_json = spec_as_json(spec, scratch / f"mesh-{n}.json")
        out = scratch / "out"
        meshc = {"build": min(build_once(spec, out, scratch / "trash").seconds for _ in range(repeat)),
                 "compile": meshc_compile_seconds(spec, repeat)}
        reference = floor.read_tree(out)
        floor.set_aside(out, scratch / "trash")
        return [measure(key, mesh_json, reference, meshc, n, baseline_repeat, scratch) for key in keys]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time the Jsonnet and KCL baselines against meshc build")
    parser.add_argument("services", type=int, nargs="?", default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="meshc build runs (best kept)")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="runs per baseline (best kept)")
    parser.add_argument("--cpp-jsonnet", action="store_true", help="also the C++ jsonnet binding (very slow)")
    args = parser.parse_args(argv)
    keys = ("go-jsonnet", "kcl") + (("cpp-jsonnet",) if args.cpp_jsonnet else ())
    work = Path(tempfile.mkdtemp(prefix="meshc-baselines-"))
    try:
        results = measure_all(args.services, args.seed, args.repeat, work, keys, args.baseline_repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        if "error" in r:
            print(f"{r['implementation']}: could not run: {r['error']}")
            continue
        print(f"{r['implementation']}, N={r['n']}: evaluate {r['evaluate_seconds']:.2f} s + write "
              f"{r['write_seconds']:.2f} s vs meshc build {r['meshc_seconds']:.2f} s -> meshc {r['speedup']:.1f}x "
              f"faster; compute only {r['evaluate_seconds']:.2f} s vs meshc compile {r['meshc_compile_seconds']:.2f} s "
              f"-> {r['compute_speedup']:.1f}x; {r['files']} files (meshc {r['meshc_files']}, same paths: "
              f"{r['same_paths']}), {r['objects']} documents (meshc {r['meshc_objects']}), bytes {r['byte_ratio']:.3f}x")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
