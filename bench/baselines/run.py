"""Time the Jsonnet and KCL programs that do meshc's translation, next to `meshc build` on the same mesh.

Both programs (mesh.jsonnet, mesh.k) read the spec as JSON and return every Envoy and Kubernetes file
meshc writes, as text. What is timed is the evaluation alone, through each language's Python binding:
the YAML-to-JSON conversion before it and writing the files after it are left out, which favours the
baselines. The result is checked against meshc's output: same paths, and the byte ratio is reported.

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


def measure(key: str, mesh_json: Path, reference: dict[str, bytes], meshc_seconds: float, n: int,
            repeat: int) -> dict[str, Any]:
    language, implementation, evaluate = IMPLEMENTATIONS[key]
    entry: dict[str, Any] = {"name": language, "key": key, "implementation": implementation, "n": n,
                             "meshc_seconds": meshc_seconds}
    try:
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            files = evaluate(mesh_json)
            runs.append(time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is reported, not fatal
        entry["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        return entry
    compared = {p: d for p, d in reference.items() if p.startswith(COMPARED_PREFIXES)}
    produced = sum(len(t.encode()) for t in files.values())
    expected = sum(len(d) for d in compared.values())
    entry |= {
        "seconds": min(runs), "runs": [round(r, 3) for r in runs],
        "files": len(files), "meshc_files": len(compared),
        "same_paths": sorted(files) == sorted(compared),
        "objects": _objects(files), "meshc_objects": _objects(compared),
        "bytes": produced, "meshc_bytes": expected, "byte_ratio": produced / expected,
        "speedup": min(runs) / meshc_seconds,
    }
    return entry


def measure_all(n: int, seed: int, repeat: int, work: Path, keys: tuple[str, ...] = ("go-jsonnet", "kcl"),
                baseline_repeat: int = 1) -> list[dict[str, Any]]:
    """meshc build (best of `repeat`) and each baseline on the same generated mesh of n services."""
    from bench.run_build import build_once

    scratch = Path(tempfile.mkdtemp(prefix="baselines-", dir=work))
    try:
        spec = scratch / f"mesh-{n}.yaml"
        spec.write_text(gen_mesh.generate(n, seed), encoding="utf-8")
        mesh_json = spec_as_json(spec, scratch / f"mesh-{n}.json")
        out = scratch / "out"
        meshc_seconds = min(build_once(spec, out).seconds for _ in range(repeat))
        reference = floor.read_tree(out)
        return [measure(key, mesh_json, reference, meshc_seconds, n, baseline_repeat) for key in keys]
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
        print(f"{r['implementation']}, N={r['n']}: {r['seconds']:.2f} s vs meshc build {r['meshc_seconds']:.2f} s "
              f"-> meshc {r['speedup']:.1f}x faster; {r['files']} files (meshc {r['meshc_files']}, same paths: "
              f"{r['same_paths']}), {r['objects']} documents (meshc {r['meshc_objects']}), bytes {r['byte_ratio']:.3f}x")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
