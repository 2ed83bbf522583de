"""Cost of hostile input: `meshc validate` on files just under the 32 MiB limit, each built to make
one part of the pipeline work hard. Prints wall time, peak RSS and the first and last lines meshc
printed, per input; the targets (issue: cost bounds) are under 5 s and under 1 GiB for any of them.

    python -m bench.hostile                  # every input, 32 MiB
    python -m bench.hostile --mib 8 --only unknown-keys alias-bomb-padded
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):     # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_mesh, run_build

ROOT = Path(__file__).resolve().parent.parent
HEADER = "apiVersion: meshc.dev/v1alpha1\nkind: Mesh\nmetadata: {name: hostile}\n"
TARGET_SECONDS = 5.0
TARGET_RSS_MIB = 1024


def _fill(size: int, head: str, line: Callable[[int], str], tail: str = "") -> str:
    parts, used, i = [head], len(head) + len(tail), 0
    while True:
        item = line(i)
        if used + len(item) > size:
            break
        parts.append(item)
        used += len(item)
        i += 1
    parts.append(tail)
    return "".join(parts)


def unknown_keys(size: int) -> str:
    """One service with millions of unknown fields: one E101 each."""
    return _fill(size, HEADER + "spec:\n  services:\n  - name: a\n    image: x\n    port: 1\n",
                 lambda i: f"    k{i:07d}: 1\n")


def unknown_keys_spread(size: int) -> str:
    """Unknown fields spread over many services (no single huge mapping)."""
    return _fill(size, HEADER + "spec:\n  services:\n",
                 lambda i: f"  - {{name: s{i}, image: x, port: 1, a: 1, b: 1, c: 1, d: 1}}\n")


def alias_bomb_padded(size: int) -> str:
    """A billion-laughs alias bomb after megabytes of comments."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = HEADER + "spec:\n  services: []\n" + "\n".join(lines) + "\n"
    padding = "# " + "x" * 76 + "\n"
    return "".join([padding] * ((size - len(bomb)) // len(padding))) + bomb


def flow_scalars(size: int) -> str:
    """One flow sequence of millions of tiny scalars: the most nodes per byte."""
    return _fill(size, HEADER + "spec:\n  services: [", lambda i: "1,", "1]\n")


def many_services(size: int) -> str:
    """A plausible spec (the benchmark generator's services) as large as the limit allows."""
    n = 1000
    while len(gen_mesh.generate(n * 2, 1)) < size and n < 64_000:
        n *= 2
    return gen_mesh.generate(n, 1)


def misspelt_upstreams(size: int) -> str:
    """Structurally valid services, each calling a service that does not exist: the semantic checks
    and their "did you mean" searches over every service name."""
    return _fill(size, HEADER + "spec:\n  services:\n",
                 lambda i: f"  - {{name: s{i}, image: x, port: 1, upstreams: [{{service: s{i}x, localPort: 2}}]}}\n")


def long_scalar(size: int) -> str:
    """One enormous string value."""
    return HEADER + "spec:\n  services:\n  - name: a\n    image: " + "x" * (size - 200) + "\n    port: 1\n"


def deep_flow(size: int) -> str:
    """Nesting as deep as libyaml allows, then far past it."""
    depth = min(size // 4, 1_000_000)
    return HEADER + "spec: " + "[" * depth + "]" * depth + "\n"


INPUTS: dict[str, Callable[[int], str]] = {
    "unknown-keys": unknown_keys,
    "unknown-keys-spread": unknown_keys_spread,
    "alias-bomb-padded": alias_bomb_padded,
    "flow-scalars": flow_scalars,
    "many-services": many_services,
    "misspelt-upstreams": misspelt_upstreams,
    "long-scalar": long_scalar,
    "deep-flow": deep_flow,
}


def measure(path: Path) -> tuple[float, float, float, int, list[str]]:
    """Wall and CPU seconds, peak RSS in MiB, exit code and the lines meshc printed (first 2, last 2).
    On a shared machine the CPU time is the steadier figure: wall time there includes waiting for a core."""
    run = run_build.run_process([*run_build.meshc_command(), "validate", str(path)], run_build.meshc_env())
    lines = run.stderr.splitlines()
    shown = lines if len(lines) <= 4 else [*lines[:2], "...", *lines[-2:]]
    return run.seconds, run.cpu_seconds, run.max_rss_kib / 1024, run.returncode, [line[:150] for line in shown]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=32 - 1 / 64, help="input size (default: just under 32 MiB)")
    parser.add_argument("--only", nargs="+", choices=sorted(INPUTS), help="these inputs only")
    args = parser.parse_args(argv)
    size = int(args.mib * 1024 * 1024)
    worst = 0.0, 0.0, 0.0
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory(prefix="meshc-hostile-") as scratch:
        for name in args.only or list(INPUTS):
            path = Path(scratch) / f"{name}.yaml"
            path.write_text(INPUTS[name](size))
            seconds, cpu, rss, code, lines = measure(path)
            print(f"{name:<22} {path.stat().st_size / 2**20:6.1f} MiB  {seconds:6.2f} s wall  {cpu:6.2f} s cpu  "
                  f"{rss:7.0f} MiB RSS  exit {code}")
            for line in lines:
                print(f"    {line}")
            worst = max(worst[0], seconds), max(worst[1], cpu), max(worst[2], rss)
            path.unlink()
    print(f"\nworst: {worst[0]:.2f} s wall, {worst[1]:.2f} s cpu (target {TARGET_SECONDS} s), {worst[2]:.0f} MiB "
          f"(target {TARGET_RSS_MIB} MiB); load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
