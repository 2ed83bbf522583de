"""Diagnostics: the one shape every problem meshc finds takes, collected, never raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
    code: str
    severity: Severity
    message: str
    span: Span | None = None
    path: Path = ()
    hint: str | None = field(default=None, compare=False)

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


class MeshcError(Exception):
    """An operational failure (I/O, Git, a target) carrying the diagnostics that explain it."""

    def __init__(self, diagnostics: list[Diagnostic], exit_code: int = 1) -> None:
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics
        self.exit_code = exit_code
