"""Diagnostics for people and machines: text (`file:line:col: level: message [CODE]`), json, github."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TextIO

from meshc.diagnostics import Diagnostic, Severity, listed_per_code

FORMATS = ("text", "json", "github")


def one_line(text: str) -> str:
    """Text with every control character (newlines too) escaped: a diagnostic stays one line, and
    a spec cannot write to the reader's terminal through its own values."""
    return _control().sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


@functools.cache     # compiled for the first diagnostic printed: a spec that checks clean prints none
def _control() -> re.Pattern[str]:
    return re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def format_text(diag: Diagnostic, *, hints: bool = True) -> str:
    where = f"{diag.span}: " if diag.span else "meshc: "
    line = f"{one_line(where)}{diag.severity.value}: {one_line(diag.message)} [{diag.code}]"
    if hints and diag.hint and f"'{diag.hint}'" not in diag.message:  # not when it only repeats "did you mean"
        line += f"\n    hint: {one_line(diag.hint)}"
    return line


def format_github(diag: Diagnostic) -> str:
    level = "error" if diag.severity is Severity.ERROR else "warning"
    props = f"file={diag.span.file},line={diag.span.line},col={diag.span.col}," if diag.span else ""
    message = diag.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::{level} {props}title={diag.code}::{message}"


def as_json(diag: Diagnostic) -> dict[str, object]:
    span = diag.span
    return {
        "code": diag.code, "severity": diag.severity.value, "message": diag.message,
        "file": span.file if span else None, "line": span.line if span else None,
        "col": span.col if span else None, "path": ".".join(str(p) for p in diag.path), "hint": diag.hint,
        **({"count": diag.count} if diag.count != 1 else {}),
    }


def summary(diagnostics: Sequence[Diagnostic], strict: bool = False) -> str:
    errors = sum(d.count for d in diagnostics if d.is_error)
    warnings = sum(d.count for d in diagnostics) - errors
    text = f"{errors:,} error{'s' * (errors != 1)}, {warnings:,} warning{'s' * (warnings != 1)}"
    if strict and warnings:
        text += f"; --strict treats {'the warning as an error' if warnings == 1 else 'warnings as errors'}"
    return text


def emit_diagnostics(diagnostics: Sequence[Diagnostic], stream: TextIO, fmt: str = "text") -> None:
    """Every diagnostic, but at most MAX_LISTED_PER_CODE of one code: the rest as "... and N more"."""
    listed = listed_per_code(list(diagnostics))
    if fmt == "json":
        import json     # the text formats, a validate's usual, need none of it

        stream.write(json.dumps([as_json(d) for d in listed], indent=2) + "\n")
        return
    for diag in listed:
        stream.write((format_github(diag) if fmt == "github" else format_text(diag)) + "\n")
