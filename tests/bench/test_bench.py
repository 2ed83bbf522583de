"""The build benchmark's parts work: the generated mesh is valid, quiet, acyclic and covers every
policy; the floor writes what meshc writes; the runner completes at N=10; the Jsonnet and KCL
baselines produce meshc's files. No timing is asserted here: speed targets live in the benchmark."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import floor, gen_mesh, load_yaml, profile_build, run_build
from bench.baselines import run as baselines
from meshc.analysis import strongly_connected
from meshc.load import SpecSource
from meshc.pipeline import check
from meshc.resolve import ir


def checked(n: int, seed: int = 1) -> ir.Mesh:
    text = gen_mesh.generate(n, seed)
    result = check(SpecSource(f"mesh-{n}.yaml", text.encode()))
    assert result.diagnostics == (), [str(d) for d in result.diagnostics]
    assert result.mesh is not None
    return result.mesh


def test_generator_is_deterministic_per_size_and_seed() -> None:
    assert gen_mesh.generate(40, 7) == gen_mesh.generate(40, 7)
    assert gen_mesh.generate(40, 7) != gen_mesh.generate(40, 8)
    assert gen_mesh.generate(40, 7) != gen_mesh.generate(41, 7)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37])
def test_small_meshes_validate_without_any_diagnostic(n: int) -> None:
    assert len(checked(n).services) == n


def test_a_mid_size_mesh_is_valid_acyclic_and_uses_every_policy() -> None:
    mesh = checked(300, seed=3)
    assert len(mesh.services) == 300
    assert all(len(component) == 1 for component in strongly_connected(mesh))
    assert all(u.service != s.name for s in mesh.services for u in s.upstreams)
    assert max(len(s.upstreams) for s in mesh.services) == gen_mesh.MAX_UPSTREAMS
    deployed = [s for s in mesh.services if s.deployed]
    assert all(len(s.versions) == 2 for s in deployed)
    assert Counter(s.protocol for s in mesh.services).keys() == set(ir.Protocol)
    assert {s.load_balancing.policy for s in mesh.services} == set(ir.LbPolicy)
    hashed = [s.load_balancing.hash_key for s in mesh.services if s.load_balancing.hash_key is not None]
    assert any(k.header for k in hashed) and any(k.source_ip for k in hashed)
    external = [s for s in mesh.services if not s.deployed]
    assert external and any(e.weight is not None for s in external for e in s.endpoints)
    edges = [u for s in mesh.services for u in s.upstreams]
    assert any(u.fail_fast for u in edges) and any(u.retries is not None for u in edges)
    assert any(s.outlier_detection for s in mesh.services) and any(s.health_check for s in mesh.services)
    assert all(s.circuit_breaker is not None for s in mesh.services)


def test_retry_budget_written_in_the_spec_is_the_worst_case_path() -> None:
    services = gen_mesh.build_graph(500, 1)
    text = gen_mesh.render(500, 1, services)
    budget = yaml.load(text, Loader=yaml.CSafeLoader)["spec"]["analysis"]["maxRetryAmplification"]
    assert budget == max(10, gen_mesh.worst_amplification(services))
    assert budget == 24    # 3 x 2 x 2 x 2 over the four calling tiers


def test_the_yaml_is_written_as_people_write_it() -> None:
    text = gen_mesh.generate(200, 1)
    assert "&ejection" in text and "*ejection" in text        # anchors and aliases
    assert "    - {name: " in text                             # flow mappings in block sequences
    assert "  - name: " in text and "# --- team " in text      # block style, comments


@pytest.fixture(scope="module")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("bench")
    spec = work / "mesh.yaml"
    spec.write_text(gen_mesh.generate(12, 1))
    out = work / "out"
    run = run_build.build_once(spec, out)
    assert run.returncode == 0 and run.max_rss_kib > 0
    return spec, out


def test_floor_writes_the_same_files_as_meshc(small_build: tuple[Path, Path], tmp_path: Path) -> None:
    spec, out = small_build
    files = floor.read_tree(out)
    assert "manifest.json" in files and any(p.startswith("kubernetes/") for p in files)
    floor.write_tree(files, tmp_path / "copy")
    assert floor.read_tree(tmp_path / "copy") == files
    result = floor.measure(spec, out, repeat=2, scratch=tmp_path)
    assert result.files == len(files) and result.bytes == sum(len(d) for d in files.values())
    assert result.seconds >= result.parse_seconds > 0
    assert list(tmp_path.iterdir()) == [tmp_path / "copy"]    # the floor cleans up after itself


def made_up_runs(wall: tuple[float, ...], cpu: tuple[float, ...]) -> list[run_build.ProcessRun]:
    """Process runs with the given figures, as the benchmark records them (nothing is timed)."""
    return [run_build.ProcessRun(w, c, 50_000, 0, "") for w, c in zip(wall, cpu, strict=True)]


def order_of(recorded: Sequence[float], given: Sequence[float]) -> list[int]:
    """Where each figure of a record stands among the made-up figures given (all distinct): which
    of the given runs the record names, by position."""
    assert len(set(given)) == len(given)
    return [given.index(figure) for figure in recorded]


def test_tmpfs_record_keeps_each_sides_best_and_their_ratios() -> None:
    """Derived from given runs (made-up figures, nothing timed): the best build and the best
    floor (with that floor's parse and write), best / best, and the median of neighbours' ratios."""
    runs = made_up_runs((1.2, 1.0, 1.5), (1.5, 1.4, 1.3))
    floors = [floor.FloorRun(seconds, cpu, parse, seconds - parse, 40, 4000)
              for seconds, cpu, parse in ((0.6, 0.6, 0.3), (0.4, 0.5, 0.25), (0.5, 0.45, 0.2))]
    result = run_build.tmpfs_result("/dev/shm", runs, floors)
    # The record's fields against the figures given above (no time is measured, nothing can be
    # slow): each side's best of its runs, and the runs themselves in order.
    assert (result.meshc_seconds, result.meshc_cpu_seconds, result.meshc_runs) == (1.0, 1.3, [1.2, 1.0, 1.5])
    assert (result.floor_seconds, result.floor_cpu_seconds, result.floor_runs) == (0.4, 0.45, [0.6, 0.4, 0.5])
    assert (result.floor_parse_seconds, result.floor_write_seconds) == (0.25, 0.4 - 0.25)
    assert result.ratio == pytest.approx(1.0 / 0.4)
    assert result.paired_ratio == pytest.approx(2.5)    # median of 1.2/0.6, 1.0/0.4, 1.5/0.5
    assert result.directory == "/dev/shm"


def test_best_of_picks_the_runs_a_record_keeps() -> None:
    """Made-up runs (nothing timed): the fastest run and the one with least CPU are picked as runs,
    not figures, so a floor's parse and write come from its fastest run; every run is listed in order."""
    wall, cpu = (1.2, 1.0, 1.5), (1.3, 1.4, 1.6)
    runs = made_up_runs(wall, cpu)
    picked = run_build.best_of(runs)
    assert picked.fastest is runs[1] and picked.least_cpu is runs[0]
    assert order_of(picked.runs, wall) == order_of(picked.cpu_runs, cpu) == [0, 1, 2]   # every run, in the order given
    floors = [floor.FloorRun(seconds, seconds, parse, seconds - parse, 40, 4000)
              for seconds, parse in ((0.6, 0.3), (0.4, 0.25), (0.5, 0.2))]
    assert run_build.best_of(floors).fastest is floors[1]


def test_baseline_record_pairs_each_build_with_the_baselines_of_its_round() -> None:
    """Derived from given runs (made-up figures, nothing timed): the baseline's best, its ratio
    to the floor, and this tree's build over the baseline's of the same round, wall and CPU."""
    runs = made_up_runs((1.0, 0.9, 1.2), (1.6, 1.5, 1.8))
    base_wall, base_cpu = (1.25, 1.0, 1.5), (2.0, 1.5, 2.25)
    base = made_up_runs(base_wall, base_cpu)
    floors = [floor.FloorRun(seconds, seconds, 0.2, seconds - 0.2, 40, 4000) for seconds in (0.5, 0.5, 0.6)]
    result = run_build.baseline_result(Path("/tmp/before"), runs, floors, base)
    # No time is measured here: the record lists the given runs in order, and its best (wall and
    # CPU alike) is the second of them, the one best_of picks.
    assert result.tree == "/tmp/before"
    assert order_of(result.runs, base_wall) == order_of(result.cpu_runs, base_cpu) == [0, 1, 2]   # in the order given
    assert run_build.best_of(base).fastest is base[1] and run_build.best_of(base).least_cpu is base[1]
    assert order_of([result.seconds], base_wall) == order_of([result.cpu_seconds], base_cpu) == [1]   # that run's
    assert result.paired_ratio == pytest.approx(2.5)        # median of 2.5, 2.0, 2.5
    assert result.vs_baseline == pytest.approx(0.8)         # median of 0.8, 0.9, 0.8
    assert result.vs_baseline_cpu == pytest.approx(0.8)     # median of 0.8, 1.0, 0.8


def test_runner_completes_at_n10_and_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmpfs = tmp_path / "tmpfs"    # any directory will do for the test; by default /dev/shm
    tmpfs.mkdir()
    code = run_build.main(["--sizes", "10", "--repeat", "2", "--results", str(tmp_path / "results"),
                           "--workdir", str(tmp_path), "--tmpfs", str(tmpfs), "--report-only",
                           "--baseline", str(run_build.ROOT)])    # this checkout against itself
    assert code == 0    # it ran; whether a target was met is the report's business, not the test's
    latest: dict[str, Any] = json.loads((tmp_path / "results" / "build-latest.json").read_text())
    (size,) = latest["sizes"]
    assert size["n"] == 10 and size["files"] >= 4 * 9     # per deployed service 3 Envoy files + 1 Kubernetes
    assert size["meshc_seconds"] > 0 and size["floor_seconds"] > 0 and size["meshc_max_rss_kib"] > 10_000
    assert size["meshc_tree_pss_kib"] > 10_000 and size["paired_ratio"] > 0
    assert len(size["meshc_runs"]) == 2 and len(size["floor_runs"]) == 2
    on_tmpfs = size["tmpfs"]      # the same pairing, both sides writing to a tmpfs
    assert on_tmpfs["directory"] == str(tmpfs)
    assert len(on_tmpfs["meshc_runs"]) == 2 and len(on_tmpfs["floor_runs"]) == 2
    assert all(isinstance(on_tmpfs[key], float) for key in (
        "meshc_seconds", "floor_seconds", "ratio", "meshc_cpu_seconds", "floor_cpu_seconds",
        "floor_parse_seconds", "floor_write_seconds", "paired_ratio"))
    baseline = on_tmpfs["baseline"]       # its builds in the same alternation, paired with this tree's
    assert baseline["tree"] == str(run_build.ROOT) and len(baseline["runs"]) == len(baseline["cpu_runs"]) == 2
    assert baseline["vs_baseline"] > 0 and baseline["vs_baseline_cpu"] > 0
    assert latest["machine"]["cpus"] >= 1
    validate = {c["check"]: c for c in latest["checks"]}["validate small spec"]
    assert validate["value"] > 0 and isinstance(validate["ok"], bool)    # measured and judged, not asserted
    printed = capsys.readouterr().out
    assert "N" in printed and "writing to a tmpfs" in printed and "this tree / baseline" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "tmpfs"]    # scratch removed
    assert list(tmpfs.iterdir()) == []


def test_paired_ratio_compares_neighbours_not_the_luckiest_runs() -> None:
    # The last floor run fell into a fast period that no build saw: best/best would say 3.0.
    builds = [1.1, 1.2, 1.8, 2.3]
    floors = [0.9, 1.0, 1.8, 0.37]
    assert min(builds) / min(floors) > 2.9
    assert run_build.paired_ratio(builds, floors) == pytest.approx((1.2 + 1.1 / 0.9) / 2)


def test_tree_memory_adds_up_a_process_and_its_children() -> None:
    """Parent and forked child each hold 40 MiB of their own: the peak counts both, shared pages
    once (PSS); a largest-process figure would show about half."""
    script = ("import os, time\n"
              "os.fork()\n"                      # both processes go on from here
              "block = b\"x\" * (40 * 2**20)\n"   # written: really allocated, not shared
              "time.sleep(0.5)\n")
    child = subprocess.Popen([sys.executable, "-c", script])
    with run_build.TreeMemory(child.pid, interval=0.02) as memory:
        child.wait()
    assert 2 * 40 * 1024 <= memory.peak_kib < 2 * 40 * 1024 + 64 * 1024


def test_profile_times_every_stage_and_profiles_the_build(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert profile_build.main(["12", "--top", "5", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for stage in ("load (YAML -> data + positions)", "emit kubernetes (documents)", "write output",
                  "write_build, --jobs 2", "function calls"):
        assert stage in out
    assert f"writing under {tmp_path}/meshc-profile-" in out
    assert list(tmp_path.iterdir()) == []     # its scratch directory is removed


def test_timeline_shows_when_each_stage_of_a_real_build_ends_in_parent_and_worker(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 220 services: from 200 on (two jobs), `meshc build` forks a worker, whose rows show too.
    assert profile_build.main(["220", "--timeline", "1", "--workdir", str(tmp_path)]) == 0
    rows = {line[:44].strip(): line[44:].split() for line in capsys.readouterr().out.splitlines()[2:]}
    for stage in ("parent: interpreter started", "parent: load end", "parent: resolve end",
                  "parent: worker forked start", "parent: units end", "parent: manifest and commit end",
                  "parent: exit", "worker: units start", "worker: exit", "(runner) process ended"):
        assert stage in rows, stage
    assert float(rows["parent: resolve end"][0]) <= float(rows["parent: worker forked start"][0]) \
        <= float(rows["worker: units start"][0]) <= float(rows["(runner) process ended"][0])
    assert list(tmp_path.iterdir()) == []


def test_import_profile_names_heavy_packages_and_their_importers() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       900 |        900 |     pydantic_core._pydantic_core\n"
        "import time:       100 |       1000 |   pydantic_core\n"
        "import time:      5000 |       6000 | meshc.validate.models\n"
    )
    top, heavy = run_build.import_profile(stderr)
    assert heavy == [{"module": "pydantic", "cumulative_ms": 1.0, "imported_by": ["meshc.validate.models"]}]
    assert top[0]["module"] == "meshc.validate.models"


def _documents(files: dict[str, Any]) -> dict[str, list[Any]]:
    """Documents per path, hashes removed (the baselines hash with md5, meshc with sha256)."""
    hashes = {"version_info", "meshc.dev/config-hash", "meshc.dev/bootstrap-hash"}

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in hashes}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.startswith("{\n"):
            return strip(json.loads(value))      # the Envoy files inside a ConfigMap
        return value

    return {path: [strip(d) for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
            for path, text in files.items()}


@pytest.fixture(scope="module")
def baseline_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A mesh big enough for every policy path the emitters have (hash routes over versions, ...)."""
    work = tmp_path_factory.mktemp("baselines")
    spec = work / "mesh.yaml"
    spec.write_text(gen_mesh.generate(80, 1))
    run_build.build_once(spec, work / "out")
    reference = {p: d.decode() for p, d in floor.read_tree(work / "out").items()
                 if p.startswith(baselines.COMPARED_PREFIXES)}
    assert any("use_hash_policy" in text for text in reference.values())
    return baselines.spec_as_json(spec, work / "mesh.json"), reference


@pytest.mark.parametrize("key, module", [("go-jsonnet", "_gojsonnet"), ("kcl", "kcl_lib")])
def test_baseline_programs_produce_meshc_files(key: str, module: str,
                                               baseline_build: tuple[Path, dict[str, str]]) -> None:
    pytest.importorskip(module)
    mesh_json, reference = baseline_build
    produced = baselines.IMPLEMENTATIONS[key][2](mesh_json)
    assert sorted(produced) == sorted(reference)
    assert _documents(produced) == _documents(reference)


def test_routed_benchmark_mesh_is_clean_and_routes_a_tenth(tmp_path: Path) -> None:
    from bench import routes

    plain, routed, count = routes.write_specs(200, 1, tmp_path)
    base = check(SpecSource("plain.yaml", plain.read_bytes()))
    result = check(SpecSource("routed.yaml", routed.read_bytes()))
    assert result.mesh is not None and base.mesh is not None
    assert [str(d) for d in result.diagnostics if d.is_error] == []
    with_routes = [s for s in result.mesh.services if s.routes]
    assert len(with_routes) == count > 0
    eligible = [s for s in base.mesh.services if s.deployed and s.protocol is not ir.Protocol.TCP]
    assert count == -(-len(eligible) // routes.ROUTED_SHARE)
    assert all(s.rate_limit is not None for s in with_routes)


def test_load_benchmark_times_loader_floor_and_another_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "mesh-10.yaml"
    spec.write_text(gen_mesh.generate(10, 1))
    other = Path(load_yaml.__file__).parent.parent / "meshc" / "load" / "yaml_loader.py"
    load_yaml.main([str(spec), "--pairs", "2", "--against", str(other), "--no-gc"])
    assert gc.isenabled()    # the collector is back on for whatever runs next
    out = capsys.readouterr().out
    for name in ("floor", "loader", "other"):
        assert f"{name}: median CPU" in out
    assert "loader/floor: median of ratios" in out and "loader/other: median of ratios" in out


def test_tmpfs_runs_default_to_dev_shm_and_can_be_turned_off(tmp_path: Path) -> None:
    assert run_build.tmpfs_directory(None, disabled=True) is None
    assert run_build.tmpfs_directory(tmp_path, disabled=False) == tmp_path
    expected = run_build.DEFAULT_TMPFS if run_build.DEFAULT_TMPFS.is_dir() else None
    assert run_build.tmpfs_directory(None, disabled=False) == expected
    with pytest.raises(SystemExit):
        run_build.tmpfs_directory(tmp_path / "missing", disabled=False)


def test_incremental_benchmark_times_three_ways_of_compiling_a_commit(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import incremental

    assert incremental.main(["--services", "40", "--pairs", "2"]) == 0
    out = capsys.readouterr().out
    for mode in ("full", "incremental", "check"):
        assert re.search(rf"^{mode} +CPU median \d+\.\d{{3}} s$", out, re.MULTILINE), out
    assert "incremental / full   paired median" in out
