"""`meshc build --jobs N`: forked workers render and write shares of the files. The output is the
same for any N, and a worker's failure (or the parent's) leaves OUT exactly as it was, with every
worker process gone."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import gen_mesh
from meshc import pipeline
from meshc.bundle import BundleWriteError, StagedOutput, write_bundle, write_sharded
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


# --- failures -------------------------------------------------------------------------------


def producer(pids: Path, fail: Callable[[], None], in_shard: int) -> Callable[[int, int], Iterator[tuple[str, bytes]]]:
    """FILES small files split between shards; the shard `in_shard` calls `fail` half-way. Every
    process that produces records its pid in `pids` and waits for the others to have done so, so
    the test knows every worker before any of them can fail or be stopped."""
    def produce(shard: int, shards: int) -> Iterator[tuple[str, bytes]]:
        with open(pids, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + 30
        while len(pids.read_text().split()) < shards and time.monotonic() < deadline:
            time.sleep(0.001)
        for index in range(shard, FILES, shards):
            if shard == in_shard and index >= FILES // 2:
                fail()
            yield f"dir-{index % 3}/file-{index}.yaml", b"{}\n"
    return produce


def workers_of(pids: Path) -> list[int]:
    return [pid for pid in map(int, pids.read_text().split()) if pid != os.getpid()]


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


@pytest.mark.parametrize(("fail", "in_shard", "raised", "message"), [
    (fail_with_disk_full, 1, OSError, "No space left on device"),
    (fail_with_a_bug, 2, BundleWriteError, "ValueError: a bug in an emitter"),
    (get_killed, 1, BundleWriteError, "build worker 1 ended without a report (killed by signal 9)"),
])
def test_a_failing_worker_leaves_out_as_it_was_and_no_worker_behind(
        previous: Path, tmp_path: Path, fail: Callable[[], None], in_shard: int, raised: type[Exception],
        message: str) -> None:
    before = snapshot(previous)
    pids = tmp_path / "pids"
    with pytest.raises(raised) as failure, StagedOutput(previous) as staged:
        write_sharded(staged, producer(pids, fail, in_shard), shards=3)
        staged.commit()
    assert message in str(failure.value)
    assert snapshot(previous) == before
    assert leftovers(tmp_path, previous) == []
    assert len(workers_of(pids)) == 2 and all(gone(pid) for pid in workers_of(pids))


def test_a_failing_parent_kills_its_workers_instead_of_waiting(previous: Path, tmp_path: Path) -> None:
    before = snapshot(previous)
    pids = tmp_path / "pids"
    hanging = producer(pids, hang, in_shard=1)   # worker 1 would never finish

    def parent_fails(shard: int, shards: int) -> Iterator[tuple[str, bytes]]:
        for count, item in enumerate(hanging(shard, shards)):
            if shard == 0 and count == 1:
                fail_with_a_bug()
            yield item

    with pytest.raises(ValueError, match="a bug in an emitter"), StagedOutput(previous) as staged:
        write_sharded(staged, parent_fails, shards=2)
        staged.commit()
    assert snapshot(previous) == before
    assert leftovers(tmp_path, previous) == []
    assert len(workers_of(pids)) == 1 and all(gone(pid) for pid in workers_of(pids))




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
