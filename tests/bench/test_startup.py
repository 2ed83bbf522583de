"""The start-up benchmark runs: its floor, meshc and a baseline checkout each validate the spec, with
bytecode kept in the scratch directory. No timing is asserted: the target lives in the benchmark."""

from __future__ import annotations

import os
from pathlib import Path

from bench import run_build, startup


def test_the_startup_benchmark_times_meshc_the_floor_and_a_baseline() -> None:
    result = startup.measure(pairs=1, baseline=run_build.ROOT)
    assert {"meshc_cpu_median", "floor_cpu_median", "cpu_ratio", "baseline_cpu_median",
            "vs_baseline_cpu_ratio"} <= result.keys()
    assert all(value > 0 for value in result.values())


def test_bytecode_is_cached_in_the_scratch_directory_and_the_checkout_is_first(tmp_path: Path) -> None:
    env = startup.environment(tmp_path, bytecode_cache=True, tree=tmp_path / "before")
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"].startswith(str(tmp_path))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "before")
    assert env["PYTHONSAFEPATH"] == "1"
    assert env["MESHC_CACHE_DIR"].startswith(str(tmp_path))
    kept = startup.environment(tmp_path, bytecode_cache=False)
    assert kept.get("PYTHONDONTWRITEBYTECODE") == os.environ.get("PYTHONDONTWRITEBYTECODE")


def test_a_cold_cache_run_validates_with_nothing_kept() -> None:
    """--cold-cache: meshc regenerates its validator and compiles its generated code on every run."""
    result = startup.measure(pairs=1, cold_cache=True)
    assert {"meshc_cpu_median", "floor_cpu_median", "cpu_ratio"} <= result.keys()
    assert all(value > 0 for value in result.values())


def test_the_build_mode_times_meshc_build_of_a_generated_mesh() -> None:
    result = startup.measure(pairs=1, build=10, baseline=run_build.ROOT)
    assert {"meshc_cpu_median", "baseline_cpu_median", "vs_baseline_cpu_ratio"} <= result.keys()
    assert all(value > 0 for value in result.values())
    # a build of 10 services does more than parse its spec
    assert result["meshc_cpu_median"] > result["floor_cpu_median"]


def test_without_site_both_sides_run_with_python_dash_s_and_find_the_installed_packages(tmp_path: Path) -> None:
    floor, meshc = startup.commands(tmp_path / "mesh.yaml", site=False)
    assert floor[1] == "-S" and meshc[1] == "-S" and meshc[2:4] == ["-m", "meshc.cli"]
    env = startup.environment(tmp_path, bytecode_cache=True, site=False)
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == str(run_build.ROOT) and set(startup.site_packages()) <= set(paths)
    result = startup.measure(pairs=1, site=False, baseline=run_build.ROOT)
    assert {"meshc_cpu_median", "floor_cpu_median", "vs_baseline_cpu_ratio"} <= result.keys()
    assert all(value > 0 for value in result.values())
