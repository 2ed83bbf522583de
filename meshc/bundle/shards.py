"""Writing one output from several processes that take units of work in turn.

A large build alternates CPU work (emit, render, hash) with file creation (system time in the
kernel); neither overlaps the other in one Python process, and threads would serialize on the GIL.
So on a machine with several cores, forked workers write into the same staging directory while the
parent writes too; the parent then collects what each worker wrote (path -> sha256 and size) for
the manifest. Every file is a function of the compiled mesh alone, so the output does not depend
on which process wrote it, nor on how many there were.

The work is a sequence of units (a service's files, the whole-mesh files), which every process
has (the workers inherit it), and each process takes the next unit nobody has taken yet from a
shared queue (a pipe of unit numbers): a process that started early, or that the machine runs
faster, simply takes more of them. Workers can therefore be forked before the parent is ready to
write (`meshc build` forks them while it finishes checking the spec), and start working at once.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any, NoReturn, Self

import orjson

from meshc.bundle.bundle import FileEntry
from meshc.bundle.store import BundleWriteError, StagedOutput, interrupts_deferred

# One unit of work: the files it makes, as (path relative to OUT, bytes).
Unit = Callable[[], Iterable[tuple[str, bytes]]]
Units = Sequence[Unit]

# A queue holds at most this many units (4 bytes each): 16 KiB, a quarter of a pipe's default
# capacity on Linux (a smaller pipe only makes the parent wait for the workers to take some).
MAX_UNITS = 4096
_RECORD = 4
# POSIX makes a pipe write of at most PIPE_BUF (4,096 on Linux, 512 at least) bytes atomic: the
# queue is filled in such writes, each of whole records, so a reader never sees half a record.
_FILL_CHUNK = 512 // _RECORD * _RECORD


class Crew:
    """Forked workers sharing the writing of one output with this process.

    `fork` starts them, and they take units from one queue until it is empty; `write` is this
    process's share (taken from the same queue), then collecting the workers' reports.
    A worker's failure is raised there (OSError as itself, anything else as BundleWriteError).
    Leaving the `with` block stops (kills, if need be) and reaps every worker: the parent's own
    failure, or a spec found invalid after the workers started, leaves no process behind."""

    def __init__(self, staged: StagedOutput, workers: int) -> None:
        self.staged = staged
        self.size = max(0, workers)
        self._workers: list[_Worker] = []
        self._queue: _Queue | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def fork(self, units: Units) -> None:
        """Fork the workers, which start on `units` at once (fork from a process without other
        threads); `write` must then be given the same units."""
        if self.size == 0 or self._workers or not hasattr(os, "fork"):
            return
        queue = self._queue = _Queue()
        for number in range(1, self.size + 1):
            with interrupts_deferred():  # a Ctrl-C now would leave a worker nobody stops
                self._workers.append(_Worker.start(number, functools.partial(_work, self.staged, units, queue)))
        queue.fill(len(units))    # after the forks: a small pipe may need readers to take it all in

    def write(self, units: Units) -> dict[str, FileEntry]:
        """This process's share of `units` (all of them without workers), then the workers' reports;
        what the manifest records of every file written."""
        if self._queue is None:
            return {rel: self.staged.write(rel, data) for unit in units for rel, data in unit()}
        entries, taken = _take(self.staged, units, self._queue)
        for worker in self._workers:
            worker_entries, worker_taken = worker.result()
            entries |= worker_entries
            taken += worker_taken
        if sorted(taken) != list(range(len(units))):     # every unit written, each once
            raise BundleWriteError(f"the build processes wrote {len(taken)} units of work, not the {len(units)} "
                                   "there are")
        return entries

    def stop(self) -> None:
        """Make sure every worker is gone (killed if it is still running) and reaped."""
        for worker in self._workers:
            worker.stop()
        if self._queue is not None:
            self._queue.close()


class _Queue:
    """Unit numbers in a pipe that every process of a crew reads from. A read of one record is
    atomic (the kernel holds the pipe's lock for the whole read, and the queue only ever holds
    whole records), so two processes never take the same unit; once every writing end is closed
    and the pipe is empty, a read returns nothing: no unit is left."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()

    def fill(self, count: int) -> None:
        if count > MAX_UNITS:
            raise ValueError(f"{count} units of work, more than a queue holds ({MAX_UNITS})")
        records = b"".join(index.to_bytes(_RECORD, "little") for index in range(count))
        try:
            for start in range(0, len(records), _FILL_CHUNK):
                os.write(self.write_end, records[start:start + _FILL_CHUNK])
        finally:
            self.close_writing()

    def taken(self) -> Iterator[int]:
        """The units this process takes, one at a time, until none is left."""
        while record := os.read(self.read_end, _RECORD):
            yield int.from_bytes(record, "little")

    def close_writing(self) -> None:
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def close(self) -> None:
        self.close_writing()
        if self.read_end >= 0:
            os.close(self.read_end)
            self.read_end = -1


def _take(staged: StagedOutput, units: Units, queue: _Queue) -> tuple[dict[str, FileEntry], list[int]]:
    entries: dict[str, FileEntry] = {}
    taken: list[int] = []
    for index in queue.taken():
        if index >= len(units):
            raise BundleWriteError(f"unit of work {index} taken from the queue, of {len(units)}")
        taken.append(index)
        for rel, data in units[index]():
            entries[rel] = staged.write(rel, data)
    return entries, taken


def _work(staged: StagedOutput, units: Units, queue: _Queue) -> dict[str, Any]:
    """A worker's work: units taken until none is left."""
    queue.close_writing()    # the parent's alone: the queue ends when the parent has filled it
    entries, taken = _take(staged, units, queue)
    return {"entries": {path: [e.sha256, e.size] for path, e in entries.items()}, "units": taken}


@dataclass
class _Worker:
    number: int
    pid: int
    report: IO[bytes]      # the read end of the pipe the worker writes its report to, when done
    reaped: bool = field(default=False)
    reported: bool = field(default=False)   # its complete report is in: it has only to exit

    @classmethod
    def start(cls, number: int, work: Callable[[], dict[str, Any]]) -> _Worker:
        read_end, write_end = os.pipe()

        def run() -> NoReturn:
            os.close(read_end)
            _report(work, write_end)

        pid = fork_child(run)
        os.close(write_end)
        return cls(number, pid, os.fdopen(read_end, "rb"))

    def result(self) -> tuple[dict[str, FileEntry], list[int]]:
        """Wait for the worker's report; the entries of the files it wrote and the units it took,
        or its failure raised.

        A complete report is sent once every file of the worker is written, and is all the parent
        needs: the worker is reaped later (stop), so that the parent writes the manifest while the
        kernel tears the worker's memory down, instead of waiting for that first."""
        payload = self.report.read()
        self.report.close()
        report: dict[str, Any] = orjson.loads(payload) if payload else {}
        if "entries" in report:
            self.reported = True
            entries = {path: FileEntry(sha256, size) for path, (sha256, size) in report["entries"].items()}
            return entries, report["units"]
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if "errno" in report:
            raise OSError(report["errno"], report["strerror"], report["filename"])
        if "error" in report:
            raise BundleWriteError(f"build worker {self.number} failed: {report['error']}")
        raise BundleWriteError(f"build worker {self.number} ended without a report ({_describe(status)})")

    def stop(self) -> None:
        """Make sure the worker is gone (killed if it is still running) and reaped."""
        if not self.reaped:
            if self.reported:
                os.waitpid(self.pid, 0)
            else:
                kill_and_reap(self.pid)
            self.reaped = True
        self.report.close()


def fork_child(run: Callable[[], NoReturn]) -> int:
    """Fork a child that runs `run` (which must leave with os._exit) and ignores Ctrl-C: it reaches
    the whole process group, and the parent stops its children itself. SIGTERM ends the child at
    once (not through the parent's handler, meshc.cli, which would make it report a traceback).
    Returns the child's pid."""
    sys.stdout.flush()  # or the child would inherit, and could repeat, unwritten output
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        run()
    return pid


def kill_and_reap(pid: int) -> None:
    """Kill a forked child that may still be running, and reap it (no zombie is left)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _report(work: Callable[[], dict[str, Any]], write_end: int) -> NoReturn:
    """A worker's whole life: its work, its report, and leaving without running the parent's exit
    handlers or finally blocks (os._exit), whatever happens."""
    status = 1
    try:
        report: dict[str, Any]
        try:
            report = work()
            status = 0
        except OSError as exc:
            report = {"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename}
        except BaseException as exc:  # noqa: BLE001 - a bug: its traceback goes to the parent, which reports it
            import traceback    # only for a bug: every build would import it (and textwrap) before its fork

            report = {"error": "".join(traceback.format_exception(exc)).rstrip()}
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(orjson.dumps(report, default=str))
    finally:
        os._exit(status)


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
