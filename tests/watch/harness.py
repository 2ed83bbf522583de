"""Running a watcher in a thread (or a `meshc watch` process) and reading its json status lines."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meshc.commands.watch import compile_function
from meshc.sync.engine import SyncReport, sync_once
from meshc.sync.target import Target
from meshc.sync.watch import LockFactory, MetricsSink, SyncFn, Watcher, WatchOptions
from meshc.sync.watch_log import StatusLog
from meshc.sync.watch_source import GitSource
from tests.support.ports import poll_until
from tests.support.process import ManagedProcess, read_text
from tests.watch.specs import SPEC_PATH

Event = dict[str, Any]
INTERVAL = 0.2
WAIT = 30.0


class EventStream(io.TextIOBase):
    """A text stream that keeps every json line written to it, for tests to wait on."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._text = ""

    def write(self, text: str) -> int:
        with self._lock:
            self._text += text
        return len(text)

    def isatty(self) -> bool:
        return False

    def events(self) -> list[Event]:
        with self._lock:
            text = self._text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def text(self) -> str:
        with self._lock:
            return self._text


def matching(events: Sequence[Event], name: str, **fields: Any) -> list[Event]:
    return [e for e in events if e["event"] == name and all(e.get(k) == v for k, v in fields.items())]


def wait_event(read: Callable[[], list[Event]], name: str, timeout: float = WAIT, **fields: Any) -> Event:
    """The first event called `name` whose fields match, waiting for it to be written."""
    found = poll_until(lambda: matching(read(), name, **fields), timeout=timeout,
                       message=lambda: f"no {name} event with {fields}; events so far:\n" +
                       "\n".join(json.dumps(e)[:400] for e in read()))
    return found[0]


class ThreadedWatcher:
    """A Watcher running `run()` in a thread; `stop()` asks it to end and waits."""

    def __init__(self, watcher: Watcher, stream: EventStream) -> None:
        self.watcher = watcher
        self.stream = stream
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.watcher.run()

    def start(self) -> ThreadedWatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        self.watcher.stop("test over")
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the watcher did not stop"
        return self.exit_code

    def events(self) -> list[Event]:
        return self.stream.events()

    def wait_streaming(self, timeout: float = WAIT) -> None:
        """Wait until every Kubernetes target's watch streams have LISTed and are following."""
        poll_until(lambda: all(events.healthy for events in self.watcher.events.values()), timeout=timeout,
                   message="the watch streams did not start")

    def wait_passes(self, count: int, timeout: float = WAIT) -> None:
        """Let the loop run `count` more passes."""
        start = self.watcher.passes
        poll_until(lambda: self.watcher.passes >= start + count, timeout=timeout,
                   message=f"the watcher did not make {count} more passes")

    def wait(self, name: str, timeout: float = WAIT, **fields: Any) -> Event:
        return wait_event(self.events, name, timeout, **fields)


def make_watcher(repo: Path | str, targets: Sequence[Target], *, interval: float = INTERVAL,
                 metrics: MetricsSink | None = None, lock_for: LockFactory | None = None,
                 branch: str = "main", cache_dir: Path | None = None, sync_fn: SyncFn = sync_once,
                 **options: Any) -> tuple[Watcher, EventStream]:
    stream = EventStream()
    settings = WatchOptions(spec_path=SPEC_PATH, interval=interval, backoff_base=min(0.1, interval),
                            backoff_cap=options.pop("backoff_cap", 1.0), **options)
    watcher = Watcher(GitSource(str(repo), branch, cache_dir), compile_function(), targets, settings,
                      log=StatusLog(stream, "json"), metrics=metrics, lock_for=lock_for, sync_fn=sync_fn,
                      rng=random.Random(7))
    return watcher, stream


class RecordingSync:
    """sync_once, remembering when each sync ran and what it was: the loop's pacing, seen from outside."""

    def __init__(self) -> None:
        self.syncs: list[tuple[float, float, SyncReport]] = []   # (monotonic start, end, report)
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> SyncReport:
        started = time.monotonic()
        report = sync_once(*args, **kwargs)
        with self._lock:
            self.syncs.append((started, time.monotonic(), report))
        return report

    def full(self) -> list[tuple[float, float, SyncReport]]:
        """The syncs that planned the whole mesh (drift passes, first syncs)."""
        with self._lock:
            return [sync for sync in self.syncs if not sync[2].incremental]


@contextmanager
def watching(repo: Path | str, targets: Sequence[Target], **kwargs: Any) -> Iterator[ThreadedWatcher]:
    watcher, stream = make_watcher(repo, targets, **kwargs)
    running = ThreadedWatcher(watcher, stream).start()
    try:
        yield running
    finally:
        running.stop()


class WatchProcess:
    """`meshc watch --log-format json ...` as a child process (own process group, output in files)."""

    def __init__(self, workdir: Path, args: Sequence[str], name: str = "watch",
                 env: Mapping[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"{name}.out"
        self.process = ManagedProcess(
            name=f"meshc watch ({name})",
            argv=[sys.executable, "-m", "meshc.cli", "watch", "--log-format", "json", *args],
            stdout_path=self.stdout_path,
            stderr_path=workdir / f"{name}.err",
            env=env,
        )
        self.stderr_path = workdir / f"{name}.err"

    def start(self) -> WatchProcess:
        self.process.start()
        return self

    def events(self) -> list[Event]:
        lines = read_text(self.stdout_path).splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]

    def wait(self, name: str, timeout: float = WAIT, **fields: Any) -> Event:
        def read() -> list[Event]:
            events = self.events()
            if not matching(events, name, **fields):
                self.process.check_running()
            return events

        return wait_event(read, name, timeout, **fields)

    def signal(self, sig: signal.Signals) -> None:
        os.killpg(self.process.pid, sig)

    def wait_exit(self, timeout: float = WAIT) -> int:
        code: int | None = poll_until(lambda: (self.process.returncode,) if self.process.returncode is not None
                                      else None, timeout=timeout,
                                      message=lambda: f"{self.process.name} still runs\n{self.process.log_tail()}")[0]
        assert code is not None
        return code

    def stop(self) -> int | None:
        return self.process.stop()
