"""`meshc watch --output DIR` when the disk refuses writes: a transient failure, retried with backoff,
nothing half-written, and in sync once there is room again.

No unprivileged test can fill a real file system (a tiny tmpfs needs mount rights), so the kernel is
made to refuse the writes another way that goes through exactly the same code: the watcher runs under
a small RLIMIT_FSIZE, so every write past that size fails with EFBIG (Python ignores SIGXFSZ, so the
write returns the error instead of the signal killing the process), the same OSError path as ENOSPC
and EDQUOT. The test then lifts the limit of the running process (prlimit), as freeing space would.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from meshc.sync.directory import DirectoryTarget
from meshc.sync.engine import sync_once
from meshc.sync.target import PermanentError, TransientError
from tests.support.gitrepo import GitRepo
from tests.support.ports import poll_until
from tests.sync.specs import bundle_of, chain_spec
from tests.watch.harness import WAIT, Event, matching, wait_event
from tests.watch.specs import SPEC_PATH, mesh_spec

pytestmark = pytest.mark.timeout(120)

SMALL_FILES = 512   # bytes: every sidecar file is larger, the write of the first one fails
LIMITED = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({SMALL_FILES}, "
           "resource.RLIM_INFINITY)); sys.argv[0] = 'meshc'; runpy.run_module('meshc.cli', run_name='__main__')")


class LimitedWatch:
    """The watcher as a child whose output comes through a pipe: the file size limit applies to
    every file the process writes, and a log file would be one of them."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LIMITED, "watch", "--log-format", "json", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def events(self) -> list[Event]:
        found = [json.loads(line) for line in list(self.lines) if line.startswith("{")]
        if self.process.poll() is not None and not matching(found, "stopped"):
            raise AssertionError("the watcher exited:\n" + "".join(self.lines))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(timeout=WAIT)


def test_a_full_disk_is_retried_and_the_directory_converges_once_there_is_room(mesh_repo: GitRepo,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    watcher = LimitedWatch(["--repo", str(mesh_repo.path), "--interval", "0.2s", "--max-backoff", "0.5s",
                            "--output", str(out)])
    try:
        head = mesh_repo.head_sha
        wait_event(watcher.events, "failed", commit=head, attempt=3)
        failures = matching(watcher.events(), "failed", commit=head)
        assert all(f["transient"] for f in failures), failures
        assert all(0 < f["retry_in_s"] <= 0.5 for f in failures)
        assert "File too large" in failures[0]["error"]
        # Nothing half-written: no manifest, no file short of its content, no staging file left.
        assert not (out / "manifest.json").exists()
        assert [p for p in out.rglob("*") if p.is_file()] == []

        resource.prlimit(watcher.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wait_event(watcher.events, "applied", WAIT, commit=head)
    finally:
        watcher.stop()
    manifest = json.loads((out / "manifest.json").read_text())
    written = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert written == {path: meta["sha256"] for path, meta in manifest["files"].items()}
    assert manifest["source"]["revision"] == head


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EMFILE])
def test_exhausted_space_or_descriptors_are_transient(code: int, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC and EDQUOT themselves, which no unprivileged test can get from a real file system:
    the failure is injected where the file is opened for writing (the first I/O of a write), and
    everything after it, the mapping and the clean-up, is the real code."""
    target = DirectoryTarget(tmp_path / "out")
    bundle = bundle_of(chain_spec(1))
    plan = target.plan(bundle)

    def refuse(fd: int, *args: object, **kwargs: object) -> object:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("meshc.sync.directory.os.fdopen", refuse)
    with pytest.raises(TransientError, match="cannot write "):
        target.apply(plan, bundle)
    monkeypatch.undo()
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []   # the staging file is gone
    target.apply(target.plan(bundle), bundle)
    assert (tmp_path / "out" / "manifest.json").exists()


def test_other_write_errors_stay_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = DirectoryTarget(tmp_path / "out")
    bundle = bundle_of(chain_spec(1))

    def refuse(fd: int, *args: object, **kwargs: object) -> object:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("meshc.sync.directory.os.fdopen", refuse)
    with pytest.raises(PermanentError, match="Read-only file system"):
        target.apply(target.plan(bundle), bundle)


def test_a_log_that_cannot_be_written_does_not_stop_the_loop(mesh_repo: GitRepo, tmp_path: Path) -> None:
    """The watcher's own log file on the full disk: every log line fails (EFBIG past the limit) as
    the directory writes do, and the loop goes on retrying them; once there is room the log says
    how many lines may be missing, and the sync completes."""
    out, log = tmp_path / "out", tmp_path / "watch.log"
    with open(log, "wb") as stdout:
        process = subprocess.Popen([sys.executable, "-c", LIMITED, "watch", "--log-format", "json", "--repo",
                                    str(mesh_repo.path), "--interval", "0.2s", "--max-backoff", "0.5s",
                                    "--output", str(out)], stdout=stdout, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        # The log fills up to the limit, then the lines after it are lost, and the process lives on.
        poll_until(lambda: log.stat().st_size >= SMALL_FILES, timeout=WAIT, message="the log never filled up")
        head = mesh_repo.head_sha
        second = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-01": "2.0.0"}), "Bump svc-01")
        assert process.poll() is None, log.read_text()
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

        def events() -> list[Event]:
            assert process.poll() is None, log.read_text(errors="replace")
            return [json.loads(line) for line in log.read_text(errors="replace").splitlines()
                    if line.startswith("{") and line.endswith("}")]

        wait_event(events, "applied", WAIT, commit=second)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=WAIT)
    assert matching(events_after_stop := [json.loads(line) for line in log.read_text(errors="replace").splitlines()
                                          if line.startswith("{") and line.endswith("}")], "log-lost")
    assert head != second and json.loads((out / "manifest.json").read_text())["source"]["revision"] == second
    assert "internal error" not in log.read_text(errors="replace"), events_after_stop


def test_files_created_before_the_disk_filled_are_meshcs_for_the_next_commit(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An apply that stops half-way (the disk full at one file) has created some files of the new
    services. The next commit, before that one was ever applied whole, changes one of them: it is
    meshc's to update, not a stranger's file that stops every later sync."""
    target = DirectoryTarget(tmp_path / "out")
    sync_once(bundle_of(chain_spec(1), revision="a" * 40), [target], revision="a" * 40)
    real_fdopen = os.fdopen

    def full_at_svc_002(fd: int, *args: Any, **kwargs: Any) -> Any:
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".svc-002.yaml."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr("meshc.sync.directory.os.fdopen", full_at_svc_002)
    with pytest.raises(TransientError, match="No space left on device"):
        sync_once(bundle_of(chain_spec(3), revision="b" * 40), [target], revision="b" * 40)
    monkeypatch.undo()
    created = tmp_path / "out" / "kubernetes" / "svc-001.yaml"
    assert created.exists() and not (tmp_path / "out" / "kubernetes" / "svc-002.yaml").exists()

    changed = bundle_of(chain_spec(3, images={"svc-001": "ghcr.io/acme/svc-001:2.0.0"}), revision="c" * 40)
    sync_once(changed, [target], revision="c" * 40)
    on_disk = {p.relative_to(target.root).as_posix(): p.read_bytes() for p in target.root.rglob("*") if p.is_file()}
    assert on_disk == dict(changed.files)
