"""Status lines of `meshc watch`: one line per event, for people (text) or machines (json).

Text lines read `TIME EVENT SHA "subject": what changed (N writes, 0.42s)`; json lines are one
object per line with the same facts as fields. On a terminal, a live status line (what the loop is
doing now) is rewritten in place below them; when output is not a terminal it is never written.
Every string is scrubbed of credentials (URL user info, tokens) before it is written.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from meshc.diagnostics import Diagnostic
from meshc.report import as_json, format_text

FORMATS = ("text", "json")

_SECRETS = (
    (re.compile(r"(?P<keep>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@"), r"\g<keep>***@"),
    (re.compile(r"(?P<keep>(?i:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\g<keep>***"),
    (re.compile(r"(?P<keep>(?i:authorization|token|password|passwd|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
     r"\g<keep>***"),
)


def scrub(text: str) -> str:
    """The text with anything that looks like a credential replaced by ***."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    return value


class StatusLog:
    """Writes events; thread-safe, flushed per line, so a crash loses no line already written."""

    def __init__(self, stream: TextIO, fmt: str = "text", *, live: bool | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}")
        self.stream = stream
        self.fmt = fmt
        self.live = fmt == "text" and (_isatty(stream) if live is None else live)
        self._lock = threading.Lock()
        self._live_shown = False
        self.lost = 0   # event lines not written since the last one that was

    def event(self, name: str, message: str, *, diagnostics: Sequence[Diagnostic] = (), lines: Sequence[str] = (),
              **fields: Any) -> None:
        """One event: `message` is the human summary, `lines` its details (text only: in json the
        `fields` carry the same facts as keys)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        with self._lock:
            self._clear_live()
            if self.fmt == "json":
                record: dict[str, Any] = {"time": _now_iso(millis=True), "event": name, "message": message, **fields}
                if diagnostics:
                    record["diagnostics"] = [as_json(d) for d in diagnostics]
                line = json.dumps(_scrub_value(record), sort_keys=False, default=str)
            else:
                line = scrub(f"{_now_iso()} {name:<8} {message}")
                for detail in lines:
                    line += "\n    " + scrub(detail)
                for diag in diagnostics:
                    line += "\n    " + scrub(format_text(diag, hints=False))
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        """A log that cannot be written (a full disk, a closed pipe) must not stop the loop it
        reports on: the line is counted as lost, and the next line that can be written says so."""
        try:
            if self.lost:
                self.stream.write(self._lost_notice())
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):   # ValueError: the stream was closed under us
            self.lost += 1
            return
        self.lost = 0

    def _lost_notice(self) -> str:
        """On a line of its own: the last failed write may have left half a line behind."""
        message = f"{self.lost} log lines may be missing: the log could not be written"
        if self.fmt == "json":
            return "\n" + json.dumps({"time": _now_iso(millis=True), "event": "log-lost", "message": message,
                                      "lines": self.lost}) + "\n"
        return f"\n{_now_iso()} {'log-lost':<8} {message}\n"

    def status(self, text: str) -> None:
        """The live line (terminal only): what the loop does now; replaced by the next one."""
        if not self.live:
            return
        with self._lock:
            self.stream.write("\r\x1b[2K" + scrub(text)[:200])
            self.stream.flush()
            self._live_shown = True

    def close(self) -> None:
        with self._lock:
            self._clear_live()

    def _clear_live(self) -> None:
        if self._live_shown:
            self.stream.write("\r\x1b[2K")
            self._live_shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _now_iso(millis: bool = False) -> str:
    now = datetime.now(UTC)
    text = now.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{now.microsecond // 1000:03d}"
    return text + "Z"


def seconds(value: float) -> str:
    """0.0421 -> '42ms', 1.234 -> '1.23s': short, and exact enough for a status line."""
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
