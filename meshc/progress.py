"""A progress line for long work (big builds, diffs, Envoy checks): on a terminal only.

Written to stderr and redrawn in place at most a few times a second; when stderr is not a TTY
(CI logs, pipes, `--format json` consumers) nothing is written at all. The line is erased when the
work ends, so what follows reads as if it had never been there.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TextIO

REDRAW_EVERY_S = 0.1
# Work shorter than this shows no progress: a line that flashes for a moment is only noise.
SHOW_AFTER_S = 0.5


def enabled(stream: TextIO) -> bool:
    """Progress on this stream? A terminal, and not turned off with MESHC_PROGRESS=0."""
    if os.environ.get("MESHC_PROGRESS") == "0":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """`with Progress("writing files") as p: ... p.update(done, total)`; also a plain `p.step(text)`."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.active = enabled(self.stream)
        self.started = time.monotonic()
        self.last_drawn = 0.0
        self.width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.clear()

    def update(self, done: int, total: int | None = None) -> None:
        if total:
            self.step(f"{done:,}/{total:,} ({100 * done // total}%)", final=done >= total)
        else:
            self.step(f"{done:,}")

    def step(self, text: str, *, final: bool = False) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if now - self.started < SHOW_AFTER_S or (now - self.last_drawn < REDRAW_EVERY_S and not final):
            return
        self.last_drawn = now
        line = f"meshc: {self.label}: {text}  {now - self.started:.0f}s"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.active and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0
