"""A progress line for long work (big builds, diffs, Envoy checks): on a terminal only.

Written to stderr and redrawn in place a few times a second by a background thread, so that a
phase that takes seconds in one call still shows time passing; when stderr is not a TTY (CI
logs, pipes, `--format json` consumers) nothing is written and no thread is started. The line is
erased when the work ends, so what follows reads as if it had never been there.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from meshc.threads import start_without_interrupts

REDRAW_EVERY_S = 0.2
# Work shorter than this shows no progress: a line that flashes for a moment is only noise.
# (MESHC_PROGRESS_DELAY overrides it, in seconds.)
SHOW_AFTER_S = 0.5

Poll = Callable[[], tuple[int, int]]   # (done, total), asked at every redraw


def enabled(stream: TextIO) -> bool:
    """Progress on this stream? A terminal, and not turned off with MESHC_PROGRESS=0."""
    if os.environ.get("MESHC_PROGRESS") == "0":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fraction(done: int, total: int) -> str:
    return f"{done:,}/{total:,} ({100 * min(done, total) // max(total, 1)}%)"


class Progress:
    """`with Progress("building") as p: p.step("writing files"); ... p.update(done, total)`."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.active = enabled(self.stream)
        self.started = time.monotonic()
        self.text = ""
        self.poll: Poll | None = None
        self._width = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.active:
            self._thread = threading.Thread(target=self._run, name="meshc-progress", daemon=True)
            start_without_interrupts(self._thread)
        return self

    def _delay(self) -> float:
        try:
            return float(os.environ.get("MESHC_PROGRESS_DELAY", SHOW_AFTER_S))
        except ValueError:
            return SHOW_AFTER_S

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._clear()

    def step(self, text: str, poll: Poll | None = None) -> None:
        """A new phase; `poll`, if given, tells how far along it is at each redraw."""
        self.text, self.poll = text, poll
        if self.active and self._delay() <= 0:
            self._draw()      # no delay asked for: show each phase at once

    def update(self, done: int, total: int) -> None:
        self.text, self.poll = fraction(done, total), None

    def _run(self) -> None:
        if self._stop.wait(self._delay()):
            return
        while not self._stop.is_set():
            self._draw()
            self._stop.wait(REDRAW_EVERY_S)

    def _draw(self) -> None:
        text, poll = self.text, self.poll
        if poll is not None:
            try:
                text = f"{text}: {fraction(*poll())}"
            except OSError:       # what it counts may vanish at any moment (a staging directory)
                pass
        line = f"meshc: {self.label}: {text}  {time.monotonic() - self.started:.0f}s"
        with self._lock:
            if self._stop.is_set():
                return
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = len(line)

    def _clear(self) -> None:
        with self._lock:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0
