"""`meshc build --jobs N`: forked workers render and write shares of the files. The output is the
same for any N, and a worker's failure (or the parent's) leaves OUT exactly as it was, with every
worker process gone."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from bench import gen_mesh
from meshc import pipeline
from meshc.bundle import BundleWriteError, Crew, StagedOutput, Unit, shards, write_bundle
from meshc.diagnostics import Diagnostic
from meshc.resolve import ir
from meshc.commands.build import cpu_limit
from meshc.load import read_spec_file
from tests.build.test_output import leftovers
from tests.build.tree import ROOT, compiled, files, meshc, snapshot

FILES = 12


def checked(spec: Path) -> pipeline.Checked:
    result = pipeline.check(read_spec_file(str(spec)))
    assert result.ok, [str(d) for d in result.diagnostics]
    return result


@pytest.mark.parametrize("name", ["synthetic", "shop"])
def test_any_number_of_jobs_writes_the_same_bytes(spec_paths: dict[str, Path], name: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "SERVICES_PER_SHARD", 1)   # fork even for a handful of services
    spec = spec_paths[name]
    expected = dict(compiled(spec).files)
    for jobs in (1, 2, 3, 7):   # 7: more workers than this mesh has services
        out = tmp_path / f"jobs-{jobs}"
        assert pipeline.write_build(checked(spec), out, jobs=jobs) == len(expected)
        assert files(out) == expected, f"--jobs {jobs}"
        assert leftovers(tmp_path, out) == []


def test_the_command_line_builds_a_large_mesh_the_same_with_one_or_two_processes(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(gen_mesh.generate(2 * pipeline.SERVICES_PER_SHARD + 20, seed=3))
    for jobs in ("1", "2"):
        result = meshc("build", str(spec), "-o", str(tmp_path / f"out-{jobs}"), "--jobs", jobs)
        assert result.returncode == 0, result.stderr
    assert files(tmp_path / "out-2") == files(tmp_path / "out-1") == dict(compiled(spec).files)


@pytest.mark.parametrize(("quota", "period", "cpus"), [
    ("max", "100000", None),       # cgroup v2, no limit
    ("-1", "100000", None),        # cgroup v1, no limit
    ("150000", "100000", 2),       # 1.5 CPUs: two processes can still share the work
    ("50000", "100000", 1),
    ("400000", "100000", 4),
    ("garbage", "100000", None),
])
def test_a_container_cpu_quota_limits_the_default_jobs(quota: str, period: str, cpus: int | None) -> None:
    assert cpu_limit(quota, period) == cpus


def test_a_jobs_count_below_one_is_a_usage_error(spec_paths: dict[str, Path], tmp_path: Path) -> None:
    result = meshc("build", str(spec_paths["shop"]), "-o", str(tmp_path / "out"), "--jobs", "0")
    assert result.returncode == 2 and "argument -j/--jobs: must be 1 or more" in result.stderr
    assert not (tmp_path / "out").exists()


# --- the queue of units ------------------------------------------------------------------------


def test_build_units_cover_every_file_once_whole_mesh_first(spec_paths: dict[str, Path]) -> None:
    mesh = checked(spec_paths["synthetic"]).mesh
    assert mesh is not None
    units = pipeline.build_units(mesh, pipeline.BuildOptions())
    assert len(units) == len(mesh.deployed_services) + 1
    made = [[file for file in unit()] for unit in units]
    assert "kubernetes/kustomization.yaml" in dict(made[0])
    paths = [path for files in made for path, _ in files]
    assert len(paths) == len(set(paths))
    assert dict(file for files in made for file in files) == dict(pipeline.iter_files(mesh, pipeline.BuildOptions()))


def test_more_services_than_a_queue_holds_share_units(spec_paths: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import meshc.bundle

    mesh = checked(spec_paths["synthetic"]).mesh
    assert mesh is not None and len(mesh.deployed_services) > 4
    monkeypatch.setattr(meshc.bundle, "MAX_UNITS", 4)     # three units for the services, one for the mesh
    units = pipeline.build_units(mesh, pipeline.BuildOptions())
    assert len(units) == 4
    assert dict(file for unit in units for file in unit()) == dict(pipeline.iter_files(mesh, pipeline.BuildOptions()))


def test_every_unit_is_written_once_by_whichever_process_takes_it(tmp_path: Path) -> None:
    """Three processes, 300 units: each unit's file is written once, by the process that took it,
    and every process takes some (none waits for a fixed share)."""
    def unit(index: int) -> Unit:
        return lambda: [(f"dir-{index % 7}/{index}.txt", f"{index} {os.getpid()}\n".encode())]

    units = [unit(index) for index in range(300)]
    with StagedOutput(tmp_path / "out") as staged, Crew(staged, 2) as crew:
        crew.fork(units)
        entries = crew.write(units)
        staged.commit()
    written = files(tmp_path / "out")
    assert sorted(entries) == sorted(written) == sorted(f"dir-{i % 7}/{i}.txt" for i in range(300))
    writers = {data.split()[1] for data in written.values()}
    assert str(os.getpid()).encode() in writers and len(writers) == 3
    assert leftovers(tmp_path, tmp_path / "out") == []


def test_workers_that_reported_are_reaped_when_the_crew_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's complete report is taken without waiting for its exit; leaving the crew's
    block reaps it (waitpid fails for a pid that is no child any more)."""
    pids = forked(monkeypatch)
    units: list[Unit] = [lambda index=index: [(f"{index}.txt", b"x")] for index in range(50)]
    with StagedOutput(tmp_path / "out") as staged, Crew(staged, 2) as crew:
        crew.fork(units)
        assert len(crew.write(units)) == 50
        staged.commit()
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


# --- failures -------------------------------------------------------------------------------


def crew_units(marks: Path, fail: Callable[[], None], parent_fail: Callable[[], None] | None = None) -> list[Unit]:
    """FILES units of one small file each. A worker calls `fail` in the first unit it takes; the
    parent takes no unit before a worker has taken one (marks: one line per unit taken in a
    worker), so a worker surely fails, whatever the machine's timing; then the parent calls
    `parent_fail`, if given."""
    parent = os.getpid()

    def unit(index: int) -> Unit:
        def files() -> Iterator[tuple[str, bytes]]:
            if os.getpid() != parent:
                with open(marks, "a") as handle:
                    handle.write(f"{os.getpid()}\n")
                fail()
            else:
                deadline = time.monotonic() + 30
                while not marks.exists() and time.monotonic() < deadline:
                    time.sleep(0.001)
                if parent_fail is not None:
                    parent_fail()
            yield f"dir-{index % 3}/file-{index}.yaml", b"{}\n"
        return files

    return [unit(index) for index in range(FILES)]


def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the build workers forked from now on in this process."""
    pids: list[int] = []
    real = shards.fork_child

    def recording(run: Callable[[], NoReturn]) -> int:
        pids.append(real(run))
        return pids[-1]

    monkeypatch.setattr(shards, "fork_child", recording)
    return pids


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def previous(spec_paths: dict[str, Path], tmp_path: Path) -> Path:
    """OUT holding a previous build."""
    out = tmp_path / "out"
    write_bundle(compiled(spec_paths["shop"]), out)
    return out


def fail_with_disk_full() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "dir-0/file-9.yaml")


def fail_with_a_bug() -> None:
    raise ValueError("a bug in an emitter")


def get_killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hang() -> None:
    signal.pause()


@pytest.mark.parametrize(("fail", "raised", "message"), [
    (fail_with_disk_full, OSError, r"No space left on device"),
    (fail_with_a_bug, BundleWriteError, r"(?s)build worker [12] failed: .*ValueError: a bug in an emitter"),
    (get_killed, BundleWriteError, r"build worker [12] ended without a report \(killed by signal 9\)"),
])
def test_a_failing_worker_leaves_out_as_it_was_and_no_worker_behind(
        previous: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: Callable[[], None],
        raised: type[Exception], message: str) -> None:
    before = snapshot(previous)
    pids = forked(monkeypatch)
    units = crew_units(tmp_path / "marks", fail)
    with pytest.raises(raised, match=message), StagedOutput(previous) as staged, Crew(staged, 2) as crew:
        crew.fork(units)
        crew.write(units)
        staged.commit()
    assert snapshot(previous) == before
    assert leftovers(tmp_path, previous) == []
    assert len(pids) == 2 and all(gone(pid) for pid in pids)


def test_a_failing_parent_kills_its_workers_instead_of_waiting(previous: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(previous)
    pids = forked(monkeypatch)
    units = crew_units(tmp_path / "marks", hang, parent_fail=fail_with_a_bug)   # the worker would never finish
    with pytest.raises(ValueError, match="a bug in an emitter"), StagedOutput(previous) as staged, \
            Crew(staged, 1) as crew:
        crew.fork(units)
        crew.write(units)
        staged.commit()
    assert snapshot(previous) == before
    assert leftovers(tmp_path, previous) == []
    assert len(pids) == 1 and all(gone(pid) for pid in pids)


def test_a_spec_failing_its_last_checks_stops_the_workers_started_early(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`meshc build` forks its workers once the spec is resolved, before the analysis: they write
    while it is still checking. A warning of the analysis under --strict then fails the build:
    the workers are stopped, their files removed, and OUT is as it was."""
    from meshc import cli

    spec = tmp_path / "mesh.yaml"
    text = gen_mesh.generate(2 * pipeline.SERVICES_PER_SHARD + 20, seed=3)
    spec.write_text(re.sub(r"maxRetryAmplification: \d+", "maxRetryAmplification: 2", text))   # W301
    out = tmp_path / "out"
    write_bundle(compiled(ROOT / "examples" / "shop" / "mesh.yaml"), out)
    before = snapshot(out)
    pids = forked(monkeypatch)
    written_meanwhile: list[int] = []
    real_analyze = pipeline.analyze

    def analyze_once_workers_wrote(mesh: ir.Mesh) -> list[Diagnostic]:
        deadline = time.monotonic() + 30
        while not written_meanwhile and time.monotonic() < deadline:
            staging = next(tmp_path.glob(".out.new-*"), None)
            count = sum(len(names) for _, _, names in os.walk(staging)) if staging is not None else 0
            if count:
                written_meanwhile.append(count)
            time.sleep(0.001)
        return list(real_analyze(mesh))

    monkeypatch.setattr(pipeline, "analyze", analyze_once_workers_wrote)
    assert cli.main(["build", str(spec), "-o", str(out), "--jobs", "2", "--strict"]) == 1
    assert written_meanwhile and written_meanwhile[0] > 0, "the worker wrote nothing while the spec was checked"
    assert len(pids) == 1 and all(gone(pid) for pid in pids)
    assert snapshot(out) == before
    assert leftovers(tmp_path, out) == []


def test_an_out_that_cannot_be_replaced_starts_no_worker_and_is_reported_after_the_check(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(gen_mesh.generate(2 * pipeline.SERVICES_PER_SHARD + 20, seed=3))
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("not a build\n")
    before = snapshot(out)
    result = meshc("build", str(spec), "-o", str(out), "--jobs", "2")
    assert result.returncode == 2
    assert "does not hold a previous meshc build; refusing to replace it" in result.stderr
    assert snapshot(out) == before and leftovers(tmp_path, out) == []


def _processes_reading(spec: Path) -> list[int]:
    """Processes whose command line names this spec: meshc and any build worker it forked."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(spec).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:   # gone meanwhile
                pass
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="looks for processes in /proc")
def test_ctrl_c_while_workers_write_leaves_out_as_it_was_and_no_process_behind(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(gen_mesh.generate(1000, seed=5))
    out = tmp_path / "out"
    assert meshc("build", str(spec), "-o", str(out), "--jobs", "1").returncode == 0
    before = snapshot(out)
    build = subprocess.Popen([sys.executable, "-m", "meshc.cli", "build", str(spec), "-o", str(out), "--jobs", "2"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The staging directory appears once the spec has checked clean, just before the worker forks.
        deadline = time.monotonic() + 60
        while not leftovers(tmp_path, out) and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        build.send_signal(signal.SIGINT)
        _, stderr = build.communicate(timeout=60)
    finally:
        build.kill()
        build.wait()
    assert leftovers(tmp_path, out) == []
    assert _processes_reading(spec) == []
    if build.returncode == 0 or (snapshot(out) != before and files(out) == dict(compiled(spec).files)):
        pytest.skip("the signal came only once the new output was in place")
    assert build.returncode == 130 and "interrupted" in stderr, stderr
    assert snapshot(out) == before


def test_ctrl_c_held_back_while_the_staging_directory_is_made_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ctrl-C that arrives while the staging directory is created is raised once it is
    recorded, still inside StagedOutput.__enter__ (no __exit__ follows): the directory goes too."""
    import tempfile

    made = tempfile.mkdtemp

    def mkdtemp_then_ctrl_c(*args: object, **kwargs: object) -> str:
        path = made(*args, **kwargs)  # type: ignore[call-overload]
        # to the main thread itself: a signal sent to the process may be handed to another of its
        # threads (pytest-xdist's), and be handled whenever that one runs
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)   # held back until the block ends
        return str(path)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_then_ctrl_c)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with StagedOutput(out):
            pytest.fail("the with block must not be entered")
    assert sorted(tmp_path.iterdir()) == []
