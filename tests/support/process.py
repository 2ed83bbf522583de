"""One child process of a test: own process group, output in files, stopped for sure."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class ProcessExited(AssertionError):
    """The process ended while a test still needed it."""


class ManagedProcess:
    """A child started in its own session; `stop()` ends the whole process group.

    stdout and stderr go to files (appended, so a restart keeps the earlier output), and
    `log_tail()` gathers the end of those and of any extra log files for failure messages.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        stdout_path: Path,
        stderr_path: Path,
        extra_logs: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.extra_logs = list(extra_logs)
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    @property
    def pid(self) -> int:
        return self._require_popen().pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_files()
        stdout = self.stdout_path.open("ab")
        stderr = self.stderr_path.open("ab")
        self._files = [stdout, stderr]
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=self.env,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(self)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout`; returns the exit code."""
        popen = self._popen
        if popen is None:
            return None
        try:
            if popen.poll() is None:
                _signal_group(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(popen.pid, signal.SIGKILL)
                    popen.wait(timeout)
            return popen.returncode
        finally:
            self._close_files()
            with _live_lock:
                _live.discard(self)

    def check_running(self) -> None:
        """Raise ProcessExited with the log tail if the process has ended."""
        if self._popen is not None and self._popen.poll() is None:
            return
        raise ProcessExited(f"{self.name} exited with code {self.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        sections = [_tail_section(path, lines) for path in [*self.extra_logs, self.stderr_path, self.stdout_path]]
        return "\n".join(section for section in sections if section)

    def _require_popen(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen

    def _close_files(self) -> None:
        for handle in self._files:
            handle.close()
        self._files = []


def read_text(path: Path) -> str:
    """The file's text so far; empty if it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _tail_section(path: Path, lines: int) -> str:
    text = read_text(path)
    if not text.strip():
        return ""
    tail = "\n".join(_clip(line) for line in text.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{tail}"


def _clip(line: str, width: int = 400) -> str:
    # Envoy logs its whole extension list on one line at startup; a tail should stay readable.
    return line if len(line) <= width else line[:width] + " [...]"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_leftovers() -> None:
    # Last line of defence when a session ends without running fixture teardown.
    with _live_lock:
        leftovers = list(_live)
    for process in leftovers:
        process.stop(timeout=1.0)
