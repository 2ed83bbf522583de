"""Paired benchmark of the YAML loader: meshc's loader against the floor of a bare libyaml event loop.

Both run in the same process on the same bytes, alternating, and each pair yields a ratio
(loader CPU time / floor CPU time); the median of ratios is robust to a busy machine, which CPU
time alone is not (cache and frequency effects still leak in). With --against FILE, a second
loader module (e.g. the previous version, `git show REV:meshc/load/yaml_loader.py > old.py`) is
timed in the same alternation, so old and new are compared pair by pair.

    python bench/gen_mesh.py 10000 --seed 1 -o /tmp/mesh-10000.yaml
    python bench/load_yaml.py /tmp/mesh-10000.yaml --pairs 5 --against /tmp/old_yaml_loader.py
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import yaml

from meshc.load.source import SpecSource
from meshc.load.yaml_loader import load_yaml


def floor(source: SpecSource) -> None:
    """Decode and pull every libyaml event, doing nothing with them: what no loader can beat."""
    parser = yaml.CSafeLoader(source.data.decode("utf-8"))
    try:
        while parser.get_event() is not None and parser.check_event():
            pass
    finally:
        parser.dispose()


def _module_loader(path: str) -> Callable[[SpecSource], Any]:
    spec = importlib.util.spec_from_file_location("_other_yaml_loader", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.load_yaml  # type: ignore[no-any-return]


def _cpu(run: Callable[[SpecSource], Any], source: SpecSource) -> float:
    gc.collect()  # what the previous run left does not count against this one
    start = time.process_time()
    result = run(source)
    elapsed = time.process_time() - start
    del result
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("spec", help="a mesh.yaml (see bench/gen_mesh.py)")
    parser.add_argument("--pairs", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--against", help="another yaml_loader.py to time in the same rounds")
    parser.add_argument("--no-gc", action="store_true",
                        help="keep the cycle collector off for every run, as `meshc build` does")
    args = parser.parse_args(argv)
    with open(args.spec, "rb") as handle:
        source = SpecSource(args.spec, handle.read())
    runs: dict[str, Callable[[SpecSource], Any]] = {"floor": floor, "loader": load_yaml}
    if args.against:
        runs["other"] = _module_loader(args.against)
    assert load_yaml(source).ok, "the spec must load cleanly"
    times: dict[str, list[float]] = {name: [] for name in runs}
    collecting = gc.isenabled()
    if args.no_gc:
        gc.disable()
    try:
        for round_ in range(args.pairs):
            order = list(runs.items()) if round_ % 2 == 0 else list(reversed(runs.items()))
            for name, run in order:
                times[name].append(_cpu(run, source))
    finally:
        if collecting:
            gc.enable()
    for name, values in times.items():
        print(f"{name:>7}: median CPU {statistics.median(values):.3f} s  (min {min(values):.3f} s)")
    pairs = list(zip(times["loader"], times["floor"]))
    print(f"loader/floor: median of ratios {statistics.median(a / b for a, b in pairs):.2f}x")
    if "other" in times:
        ratios = [a / b for a, b in zip(times["loader"], times["other"])]
        print(f"loader/other: median of ratios {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
