"""The routing benchmark: `meshc build` of a mesh with request routes on a tenth of its services,
against the same mesh without them (target: within 1.3x at N = 1,000).

Both specs come from bench/gen_mesh.py and are written the same way (PyYAML's C dumper), so they
differ only by the routes: on every tenth deployed HTTP-family service, four routes (a header
canary, a weighted path route with its own timeout and retries, a fault for test traffic, a
mirror) and an inbound rate limit. Builds alternate (plain, routed, plain, ...); the report gives
the best of each and the paired ratio (median of routed / the plain build run just before it), and
the same for the compile step alone (load to bundle in this process, no disk, in CPU seconds).

    python -m bench.routes                     # N = 1,000, 7 pairs
    python -m bench.routes --n 1000 --repeat 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):     # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import floor, gen_mesh
from bench.run_build import RESULTS, build_once, machine

TARGET_RATIO = 1.3
ROUTED_SHARE = 10      # every tenth eligible service


def routes_for(service: dict[str, Any]) -> list[dict[str, Any]]:
    versions = [v["name"] for v in service["versions"]]
    stable, canary = versions[0], versions[-1]
    return [
        {"name": "testers", "match": {"headers": {"x-canary": {"exact": "true"}}, "methods": ["GET"]},
         "version": canary},
        {"name": "api-v2", "match": {"path": {"prefix": "/api/v2"}},
         "versions": [{"name": stable, "weight": 50}, {"name": canary, "weight": 50}],
         "timeout": "900ms", "retries": {"attempts": 1, "retryOn": [503, "reset"]},
         "headers": {"request": {"set": {"x-route": "api-v2"}}}},
        {"name": "chaos", "match": {"headers": {"x-chaos": {"present": True}}},
         "fault": {"delay": {"duration": "50ms", "percent": 1}, "abort": {"status": 503, "percent": 0.5}}},
        {"name": "shadow", "match": {"path": {"regex": "/orders/[0-9]+"}},
         "mirror": {"version": canary, "percent": 5}, "rewrite": {"prefix": "/"}},
    ]


def with_routes(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of the generated spec with routes and a rate limit on every tenth deployed HTTP-family service."""
    routed = 0
    eligible = [s for s in data["spec"]["services"]
                if "versions" in s and s.get("protocol", "http") != "tcp" and len(s["versions"]) > 1]
    for index, service in enumerate(eligible):
        if index % ROUTED_SHARE == 0:
            service["routes"] = routes_for(service)
            service["rateLimit"] = {"requests": 1000, "per": "1s", "burst": 200}
            routed += 1
    return data, routed


def write_specs(n: int, seed: int, work: Path) -> tuple[Path, Path, int]:
    data = yaml.load(gen_mesh.generate(n, seed), Loader=yaml.CSafeLoader)
    plain, routed = work / f"plain-{n}.yaml", work / f"routed-{n}.yaml"
    plain.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False))
    data, count = with_routes(data)
    routed.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False))
    return plain, routed, count


def measure(n: int, seed: int, repeat: int, work: Path) -> dict[str, Any]:
    plain, routed, count = write_specs(n, seed, work)
    trash = work / "trash"
    plain_runs, routed_runs = [], []
    for _ in range(repeat):
        plain_runs.append(build_once(plain, work / "out-plain", trash).seconds)
        routed_runs.append(build_once(routed, work / "out-routed", trash).seconds)
    files = len(floor.read_tree(work / "out-routed"))
    compile_plain, compile_routed = [], []
    for _ in range(repeat):      # alternating too: load to bundle in this process, no disk
        compile_plain.append(compile_cpu_seconds(plain))
        compile_routed.append(compile_cpu_seconds(routed))
    return {
        "compile_plain_best": min(compile_plain), "compile_routed_best": min(compile_routed),
        "compile_paired_ratio": statistics.median(r / p for r, p in zip(compile_routed, compile_plain, strict=True)),
        "n": n, "routed_services": count, "files": files, "repeat": repeat,
        "plain_runs": [round(s, 4) for s in plain_runs], "routed_runs": [round(s, 4) for s in routed_runs],
        "plain_best": min(plain_runs), "routed_best": min(routed_runs),
        "best_ratio": min(routed_runs) / min(plain_runs),
        "paired_ratio": statistics.median(r / p for r, p in zip(routed_runs, plain_runs, strict=True)),
    }


def compile_cpu_seconds(spec: Path) -> float:
    """CPU seconds of meshc's compile step (load to bundle) in this process, cyclic GC off as
    `meshc build` has it. CPU time, not wall time: on a shared machine another process's load
    stretches wall time but not the CPU this process uses."""
    import gc

    from meshc.load import read_spec_file
    from meshc.pipeline import compile

    gc.disable()
    try:
        start = time.process_time()
        compiled = compile(read_spec_file(str(spec)))
        seconds = time.process_time() - start
    finally:
        gc.enable()
    if compiled.bundle is None:
        raise RuntimeError(f"meshc could not compile {spec}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="meshc build with routes on a tenth of the services vs without")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7, help="pairs of builds")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshc-routes-") as work:
        result = measure(args.n, args.seed, args.repeat, Path(work))
    result["machine"] = machine()
    print(f"N={result['n']}, routes on {result['routed_services']} services, {result['files']} files")
    print(f"without routes: best {result['plain_best']:.3f} s   with routes: best {result['routed_best']:.3f} s")
    print(f"ratio best/best {result['best_ratio']:.3f}, paired (median) {result['paired_ratio']:.3f}  "
          f"(target <= {TARGET_RATIO})")
    print(f"compile only (no disk, CPU s): {result['compile_plain_best']:.3f} vs {result['compile_routed_best']:.3f}, "
          f"paired {result['compile_paired_ratio']:.3f}")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "routes-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["paired_ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
