"""Start-up cost: `meshc validate` of a 15-line spec, paired with the floor of a Python process that
parses the same file with libyaml (`python -c "import yaml; yaml.load(..., CSafeLoader)"`).

Runs alternate (floor, meshc, floor, meshc, ...), so both see the same machine; the figure is the
median of the paired ratios (each meshc run over the floor run just before it), reported for wall
time and for CPU time (user + system: on a shared machine the steadier of the two). The target
(issue: fast start-up) is a validate under 0.1 s.

    python -m bench.startup                 # 21 pairs
    python -m bench.startup --pairs 51
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):     # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run_build

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


def commands(spec: Path) -> tuple[list[str], list[str]]:
    floor = [sys.executable, "-c", f"import yaml; yaml.load(open({str(spec)!r}, 'rb'), Loader=yaml.CSafeLoader)"]
    return floor, [*run_build.meshc_command(), "validate", str(spec)]


def measure(pairs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="meshc-startup-") as scratch:
        spec = Path(scratch) / "mesh.yaml"
        spec.write_text(SPEC)
        floor_cmd, meshc_cmd = commands(spec)
        env = run_build.meshc_env()
        for argv in (floor_cmd, meshc_cmd):     # warm the page cache and .pyc files; not counted
            run_build.run_process(argv, env)
        floors, meshcs = [], []
        for _ in range(pairs):
            floors.append(run_build.run_process(floor_cmd, env))
            run = run_build.run_process(meshc_cmd, env)
            if run.returncode != 0:
                raise RuntimeError(f"meshc validate failed:\n{run.stderr}")
            meshcs.append(run)
    return {
        "meshc_wall_median": statistics.median(r.seconds for r in meshcs),
        "meshc_cpu_median": statistics.median(r.cpu_seconds for r in meshcs),
        "floor_wall_median": statistics.median(r.seconds for r in floors),
        "floor_cpu_median": statistics.median(r.cpu_seconds for r in floors),
        "wall_ratio": statistics.median(m.seconds / f.seconds for m, f in zip(meshcs, floors)),
        "cpu_ratio": statistics.median(m.cpu_seconds / max(f.cpu_seconds, 1e-3) for m, f in zip(meshcs, floors)),
        "meshc_wall_best": min(r.seconds for r in meshcs),
        "floor_wall_best": min(r.seconds for r in floors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=21)
    args = parser.parse_args(argv)
    result = measure(args.pairs)
    print(f"meshc validate (15 lines): median {result['meshc_wall_median']:.3f} s wall, "
          f"{result['meshc_cpu_median']:.3f} s cpu (best {result['meshc_wall_best']:.3f} s)")
    print(f"floor (python + libyaml):  median {result['floor_wall_median']:.3f} s wall, "
          f"{result['floor_cpu_median']:.3f} s cpu (best {result['floor_wall_best']:.3f} s)")
    print(f"paired ratio meshc/floor: {result['wall_ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x cpu "
          f"({args.pairs} pairs)")
    met = result["meshc_cpu_median"] <= TARGET_SECONDS
    print(f"{'PASS' if met else 'FAIL'}  validate under {TARGET_SECONDS} s (cpu median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
