"""Diagnostics: the one shape every problem meshc finds takes, collected, never raised."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum

# Past this many diagnostics of one code, the rest are counted, not listed: 2.5 million "unknown
# field" lines help nobody, and building each one costs time and memory.
MAX_LISTED_PER_CODE = 100


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A position in a source file; line and col are 1-based, as editors count."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about the spec (or the command line): a code, a severity, a message, and where."""

    code: str
    severity: Severity
    message: str
    span: Span | None = None
    path: Path = ()
    hint: str | None = field(default=None, compare=False)
    count: int = field(default=1, compare=False)   # > 1: it stands for this many problems of its code, not listed

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        span = self.span or Span("", 0, 0)
        return (span.file, span.line, span.col, self.code, self.message)


def error(code: str, message: str, span: Span | None, path: Path = (), hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span, path, hint)


def warning(code: str, message: str, span: Span | None, path: Path = (), hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.WARNING, message, span, path, hint)


def has_errors(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> bool:
    return any(d.is_error for d in diagnostics)


def sorted_diagnostics(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> list[Diagnostic]:
    """Position order, duplicates (same code at the same place) removed."""
    seen: set[tuple[str, Span | None, str]] = set()
    unique = []
    for diag in sorted(diagnostics, key=Diagnostic.sort_key):
        key = (diag.code, diag.span, diag.message)
        if key not in seen:
            seen.add(key)
            unique.append(diag)
    return unique


def listed_per_code(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...],
                    limit: int = MAX_LISTED_PER_CODE) -> list[Diagnostic]:
    """The first `limit` diagnostics of each code, in order, then per code that has more one
    diagnostic standing for the rest: "... and 2,499,900 more E101", at the first one left out."""
    listed: Counter[str] = Counter()
    kept: list[Diagnostic] = []
    rest: dict[str, Diagnostic] = {}
    for diag in diagnostics:
        if listed[diag.code] < limit and diag.count == 1:
            listed[diag.code] += 1
            kept.append(diag)
            continue
        first = rest.get(diag.code)
        rest[diag.code] = diag if first is None else replace(first, count=first.count + diag.count)
    return kept + [replace(d, message=f"... and {d.count:,} more {d.code}", hint=None, count=d.count)
                   for d in rest.values()]


class MeshcError(Exception):
    """An operational failure (I/O, Git, a target) carrying the diagnostics that explain it."""

    def __init__(self, diagnostics: list[Diagnostic], exit_code: int = 1) -> None:
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics
        self.exit_code = exit_code
