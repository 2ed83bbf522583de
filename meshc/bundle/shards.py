"""Writing one output from several processes, each rendering and writing a share of the files.

A large build alternates CPU work (emit, render, hash) with file creation (system time in the
kernel); neither overlaps the other in one Python process, and threads would serialize on the GIL.
So on a machine with several cores, forked workers take every k-th share of the files and write
them into the same staging directory while the parent does its own share; the parent then collects
what each worker wrote (path -> sha256 and size) for the manifest. Every file is a function of the
compiled mesh alone, so the output does not depend on the number of shards.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, NoReturn

import orjson

from meshc.bundle.bundle import FileEntry
from meshc.bundle.store import BundleWriteError, StagedOutput, interrupts_deferred

# (shard, shards) -> the files of that shard, as (path relative to OUT, bytes)
Producer = Callable[[int, int], Iterable[tuple[str, bytes]]]


def write_sharded(staged: StagedOutput, produce: Producer, shards: int = 1) -> dict[str, FileEntry]:
    """Write produce(0, shards) here and produce(k, shards) in a forked worker per k >= 1; what
    the manifest records of every file written. A worker's failure is raised here (OSError as
    itself, anything else as BundleWriteError) once every worker has been stopped."""
    if shards <= 1 or not hasattr(os, "fork"):
        return _write_shard(staged, produce, 0, 1)
    workers: list[_Worker] = []
    try:
        for shard in range(1, shards):
            with interrupts_deferred():  # a Ctrl-C now would leave a worker nobody stops
                workers.append(_Worker.start(staged, produce, shard, shards))
        entries = _write_shard(staged, produce, 0, shards)
        for worker in workers:
            entries |= worker.result()
        return entries
    finally:
        for worker in workers:
            worker.stop()


def _write_shard(staged: StagedOutput, produce: Producer, shard: int, shards: int) -> dict[str, FileEntry]:
    return {rel: staged.write(rel, data) for rel, data in produce(shard, shards)}


@dataclass
class _Worker:
    shard: int
    pid: int
    report: IO[bytes]      # the read end of the pipe the worker writes its report to, when done
    reaped: bool = False

    @classmethod
    def start(cls, staged: StagedOutput, produce: Producer, shard: int, shards: int) -> _Worker:
        read_end, write_end = os.pipe()

        def work() -> NoReturn:
            os.close(read_end)
            _work(staged, produce, shard, shards, write_end)

        pid = fork_child(work)
        os.close(write_end)
        return cls(shard, pid, os.fdopen(read_end, "rb"))

    def result(self) -> dict[str, FileEntry]:
        """Wait for the worker; the entries of the files it wrote, or its failure raised."""
        payload = self.report.read()
        self.report.close()
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        report: dict[str, Any] = orjson.loads(payload) if payload else {}
        if "entries" in report and os.waitstatus_to_exitcode(status) == 0:
            return {path: FileEntry(sha256, size) for path, (sha256, size) in report["entries"].items()}
        if "errno" in report:
            raise OSError(report["errno"], report["strerror"], report["filename"])
        if "error" in report:
            raise BundleWriteError(f"build worker {self.shard} failed: {report['error']}")
        raise BundleWriteError(f"build worker {self.shard} ended without a report ({_describe(status)})")

    def stop(self) -> None:
        """Make sure the worker is gone (killed if it is still running) and reaped."""
        if not self.reaped:
            kill_and_reap(self.pid)
            self.reaped = True
        self.report.close()


def fork_child(run: Callable[[], NoReturn]) -> int:
    """Fork a child that runs `run` (which must leave with os._exit) and ignores Ctrl-C: it reaches
    the whole process group, and the parent stops its children itself. Returns the child's pid."""
    sys.stdout.flush()  # or the child would inherit, and could repeat, unwritten output
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run()
    return pid


def kill_and_reap(pid: int) -> None:
    """Kill a forked child that may still be running, and reap it (no zombie is left)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _work(staged: StagedOutput, produce: Producer, shard: int, shards: int, write_end: int) -> NoReturn:
    """A worker's whole life: write its shard, report, and leave without running the parent's
    exit handlers or finally blocks (os._exit), whatever happens."""
    status = 1
    try:
        report: dict[str, Any]
        try:
            entries = _write_shard(staged, produce, shard, shards)
            report = {"entries": {path: [e.sha256, e.size] for path, e in entries.items()}}
            status = 0
        except OSError as exc:
            report = {"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename}
        except BaseException as exc:  # noqa: BLE001 - a bug: its traceback goes to the parent, which reports it
            report = {"error": "".join(traceback.format_exception(exc)).rstrip()}
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(orjson.dumps(report, default=str))
    finally:
        os._exit(status)


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
