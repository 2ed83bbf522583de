"""Where each key and value of a loaded spec was written, kept in the shape of the data itself.

The loader records, per collection, libyaml's mark of each entry's key and value in a dictionary
(mapping) or list (sequence) beside the data, and nothing else: no path tuple per node and no flat
table, which at 10,000 services cost more than the rest of loading. A lookup walks the path from the
root instead, a handful of dictionary reads, and only the marks a diagnostic or a span asks for ever
become line and column numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Protocol, TypeAlias

from meshc.diagnostics import Path, Span


# Paths up to this long have their walk memoized (spec, services, <index>, upstreams).
MEMOIZED_DEPTH = 4


class Mark(Protocol):
    """A parser's position: 0-based line and column (libyaml's `Mark`, or PyYAML's pure one)."""

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


class Node:
    """The positions of one collection: where it starts, and where each entry's key and value are.

    A child is a Node (a collection) or a Mark (a scalar). An alias is a Node of its own mark that
    shares the anchored collection's `keys` and `values`, so it costs one object, not a copy.
    """

    __slots__ = ("at", "keys", "values")

    def __init__(self, at: Mark, keys: dict[str, Mark], values: dict[str, Position] | list[Position]) -> None:
        self.at = at
        self.keys = keys        # a mapping's keys (a sequence's stays empty)
        self.values = values    # by key for a mapping, by index for a sequence


Position: TypeAlias = Node | Mark


@dataclass(frozen=True, slots=True)
class Positions:
    """Where each data path was written: the value's span and, for mapping entries, the key's."""

    file: str
    root: Position | None = None
    # The walk to each short path asked for so far, with its span: the resolver asks for a span of
    # every IR node, tens of thousands of paths under a few thousand prefixes (a service, its
    # upstreams), so the prefix's walk and its Span are made once and only the last one or two
    # steps below it are walked per call (inline: this is the resolver's most frequent call).
    _walked: dict[Path, tuple[Position | None, Span]] = field(default_factory=dict, compare=False, repr=False)
    # Every span value() answered, by its path: the resolver asks for a quarter of its paths more
    # than once (a service's defaults, an upstream's retries), and each answer is a Span made anew.
    _answered: dict[Path, Span] = field(default_factory=dict, compare=False, repr=False)

    def value(self, path: Path) -> Span:
        """The span of the value at path, or of its nearest ancestor that was written."""
        span = self._answered.get(path)
        if span is None:
            span = self._answered[path] = self._value(path)
        return span

    def span(self, *path: str | int) -> Span:
        """value(path), the path given part by part: the resolver's form (~12,000 calls per 1,000
        services), without a call in between."""
        span = self._answered.get(path)
        if span is None:
            span = self._answered[path] = self._value(path)
        return span

    def _value(self, path: Path) -> Span:
        if len(path) <= MEMOIZED_DEPTH:
            walked = self._walked.get(path)
            return (walked if walked is not None else self._walk(path))[1]
        prefix = path[:MEMOIZED_DEPTH]
        walked = self._walked.get(prefix)
        position, span = walked if walked is not None else self._walk(prefix)
        at: Mark | None = None
        for part in path[MEMOIZED_DEPTH:]:
            if not isinstance(position, Node):   # not written, or a scalar: nothing is under it
                break
            values = position.values
            if isinstance(values, dict):
                child = values.get(part) if isinstance(part, str) else None
            else:
                child = values[part] if isinstance(part, int) and 0 <= part < len(values) else None
            if child is None:
                break
            position = child
            at = child.at if isinstance(child, Node) else child
        return span if at is None else _new_span(self.file, at.line + 1, at.column + 1)

    def _walk(self, path: Path) -> tuple[Position | None, Span]:
        """The position at path (None once an ancestor was not written) and the span of the
        nearest one that was; memoized."""
        walked = self._walked.get(path)
        if walked is None:
            if not path:
                walked = (self.root, self._span(self.root) if self.root is not None else Span(self.file, 1, 1))
            else:
                parent, span = self._walk(path[:-1])
                child = _child(parent, path[-1]) if parent is not None else None
                walked = (child, self._span(child)) if child is not None else (None, span)
            self._walked[path] = walked
        return walked

    def _span(self, position: Position) -> Span:
        at = _mark(position)
        return _new_span(self.file, at.line + 1, at.column + 1)

    def key(self, path: Path) -> Span:
        """The span of the key naming path (falls back to the value, then to ancestors)."""
        if path and isinstance(path[-1], str):
            parent = self._exact(path[:-1])
            if isinstance(parent, Node):
                at = parent.keys.get(path[-1])
                if at is not None:
                    return Span(self.file, at.line + 1, at.column + 1)
        return self.value(path)

    def has(self, path: Path) -> bool:
        return self._exact(path) is not None

    def last_line(self, path: Path) -> int:
        """The last line any value at or under path was written on (an alias counts where its
        anchor's entries are), or 0 when nothing at path was."""
        position = self._exact(path)
        if position is None:
            return 0
        last = 0
        seen: set[int] = set()   # an alias shares its anchor's entries: each is walked once
        todo = [position]
        while todo:
            position = todo.pop()
            last = max(last, _mark(position).line + 1)
            if isinstance(position, Node) and id(position.values) not in seen:
                seen.add(id(position.values))
                todo.extend(position.values.values() if isinstance(position.values, dict) else position.values)
        return last

    def _exact(self, path: Path) -> Position | None:
        position = self.root
        for part in path:
            if position is None:
                break
            position = _child(position, part)
        return position


def _span_maker() -> Callable[[str, int, int], Span]:
    """Span(file, line, col) without the frozen dataclass's __init__ (three object.__setattr__
    calls, twice the cost of setting its three slots directly): the resolver makes ~9,000 spans
    per 1,000 services. The result is a Span like any other (equal, hashed, pickled alike)."""
    set_file, set_line, set_col = (getattr(Span, name).__set__ for name in ("file", "line", "col"))
    new = object.__new__

    def new_span(file: str, line: int, col: int) -> Span:
        span = new(Span)
        set_file(span, file)
        set_line(span, line)
        set_col(span, col)
        return span
    return new_span


_new_span = _span_maker()


def _mark(position: Position) -> Mark:
    return position.at if isinstance(position, Node) else position


def _child(position: Position, part: str | int) -> Position | None:
    if not isinstance(position, Node):
        return None
    values = position.values
    if isinstance(values, dict):
        return values.get(part) if isinstance(part, str) else None
    if isinstance(part, int) and 0 <= part < len(values):
        return values[part]
    return None


def size(position: Position) -> int:
    """How many keys and values position holds, itself included, aliases counted in full."""
    count = 0
    todo = [position]
    while todo:
        position = todo.pop()
        count += 1
        if isinstance(position, Node):
            count += len(position.keys)
            todo.extend(position.values.values() if isinstance(position.values, dict) else position.values)
    return count
