"""A positioned YAML loader driven by libyaml's event stream.

Why events and not `yaml.compose`: composing node objects costs ~5x the parse itself and grows
faster than linearly on large specs, and libyaml's composer recurses in C (deep nesting crashes
the interpreter). Building plain data straight from events is iterative, linear, and lets us
record the (line, col) of every key and value, detect duplicate keys, bound alias expansion and
resolve scalars with the YAML 1.2 core schema (so `off` and `yes` stay strings, as people mean).
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshc.diagnostics import Diagnostic, Path, Span, error, warning
from meshc.load.source import MAX_SPEC_BYTES, SpecSource
from meshc.text import describe, first_unsafe, may_hold_unsafe

try:  # libyaml is what makes this fast; the pure parser is a correct fallback.
    from yaml import CSafeLoader as _Parser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _Parser  # type: ignore[assignment]

MAX_DEPTH = 64
# Keys and values a spec may hold, aliases expanded: a 10,000-service spec holds about 700,000.
# A fixed number, not one that grows with the file, so that neither an alias bomb padded with
# megabytes of comments nor a file of millions of keys costs more time and memory than this many.
MAX_NODES = 1_000_000

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
# Any of the six above: most scalars that start with a digit are durations, sizes or versions
# ("5s", "500ms", "1.2.3"), which this one match turns away instead of six.
_NUMERIC = re.compile("|".join(f"(?:{pattern.pattern})" for pattern in (_INT, _OCT, _HEX, _FLOAT, _INF, _NAN)))

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_KEY = "<<"
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class Positions:
    """Where each data path was written: the value's span and, for mapping entries, the key's."""

    file: str
    values: dict[Path, tuple[int, int]]
    keys: dict[Path, tuple[int, int]]

    def value(self, path: Path) -> Span:
        """The span of the value at path, or of its nearest ancestor that was written."""
        return self._nearest(self.values, path)

    def key(self, path: Path) -> Span:
        """The span of the key naming path (falls back to the value, then to ancestors)."""
        if path in self.keys:
            return Span(self.file, *self.keys[path])
        return self.value(path)

    def has(self, path: Path) -> bool:
        return path in self.values

    def _nearest(self, table: dict[Path, tuple[int, int]], path: Path) -> Span:
        while path:
            if path in table:
                return Span(self.file, *table[path])
            path = path[:-1]
        return Span(self.file, *table.get((), (1, 1)))


@dataclass(slots=True)
class Loaded:
    data: Any
    positions: Positions
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.data is not None and not any(d.is_error for d in self.diagnostics)


class _Abort(Exception):
    """Loading cannot go on; the diagnostic explains why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def load_yaml(source: SpecSource) -> Loaded:
    """Decode and parse one spec; every failure becomes a diagnostic, never an exception."""
    empty = Positions(source.name, {}, {})
    text, diagnostics = _decode(source)
    if text is None:
        return Loaded(None, empty, diagnostics)
    builder = _Builder(source.name, text, source.data)
    # Loading allocates ~2 million containers and tuples, none of them in a reference cycle (an alias
    # only names a finished, earlier node), so the cycle collector finds nothing; left on, it walks
    # the growing heap again and again and costs a third of the load. Reference counting frees it all.
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            data = builder.build()
        except _Abort as abort:
            return Loaded(None, builder.positions(), diagnostics + builder.diagnostics + [abort.diagnostic])
        return Loaded(data, builder.positions(), diagnostics + builder.diagnostics)
    finally:
        if collecting:
            gc.enable()


def _decode(source: SpecSource) -> tuple[str | None, list[Diagnostic]]:
    data = source.data
    if len(data) > MAX_SPEC_BYTES:
        msg = f"the file is {len(data)} bytes; the limit is {MAX_SPEC_BYTES}"
        return None, [error("E009", msg, Span(source.name, 1, 1))]
    notes: list[Diagnostic] = []
    if any(data.startswith(bom) for bom in _OTHER_BOMS):
        msg = "the file starts with a UTF-16/UTF-32 byte order mark; save it as UTF-8"
        return None, [error("E002", msg, Span(source.name, 1, 1))]
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
        notes.append(warning("W001", "a UTF-8 byte order mark at the start of the file was ignored",
                             Span(source.name, 1, 1)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        msg = f"byte 0x{data[exc.start]:02x} is not valid UTF-8; the file must be UTF-8 text"
        return None, [error("E002", msg, Span(source.name, line, col))]
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return None, [error("E002", "the file contains a NUL character; it is not text", Span(source.name, line, col))]
    return text, notes


_MAYBE_NOT_STRING = frozenset("0123456789+-.~nNtTfF")


def resolve_plain_scalar(value: str) -> Any:
    """YAML 1.2 core schema resolution of an unquoted scalar."""
    if not value:
        return None
    first = value[0]
    if first not in _MAYBE_NOT_STRING:
        return value  # the common case (names, images, policies) decided by one character
    if first.isdigit() or first in "+-.":
        return _resolve_number(value)
    if _NULL.match(value):
        return None
    if _TRUE.match(value):
        return True
    if _FALSE.match(value):
        return False
    return value


def _resolve_number(value: str) -> Any:
    """A scalar starting with a digit, a sign or a dot: int, float, inf/nan, or still a string."""
    if value.isdigit() and value.isascii():  # ports, counts, weights: the common number
        return int(value)
    if not _NUMERIC.match(value):
        return value
    if _INT.match(value):
        return int(value)
    if _OCT.match(value):
        return int(value[2:], 8)
    if _HEX.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value) and value not in {".", "+.", "-."}:
        return float(value)
    if _INF.match(value):
        return float("-inf") if value.startswith("-") else float("inf")
    if _NAN.match(value):
        return float("nan")
    return value


_EXPLICIT_TAGS = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
}


class _Frame:
    """A mapping or sequence under construction (a plain slotted class: one is made per collection)."""

    __slots__ = ("container", "path", "anchor", "entries_start", "key", "key_pending", "skip_value",
                 "explicit", "merges", "is_map")

    def __init__(self, container: dict[str, Any] | list[Any], path: Path, anchor: str | None,
                 entries_start: int, is_map: bool) -> None:
        self.container = container
        self.path = path
        self.anchor = anchor
        self.entries_start = entries_start
        self.key: str | None = None
        self.key_pending = is_map  # only a mapping ever waits for a key
        self.skip_value = False
        self.explicit: dict[str, int] = {}
        self.merges: list[tuple[Any, int, int]] = []  # value, entries[start:end]
        self.is_map = is_map


class _Builder:
    """Consumes libyaml events and builds plain data; records one position entry per node."""

    def __init__(self, file: str, text: str, data: bytes) -> None:
        self.file = file
        self.text = text
        self.parser = _Parser(text)
        self.diagnostics: list[Diagnostic] = []
        # (path, is_key, (line, col)), in document order: an anchored subtree is a contiguous slice.
        self.entries: list[tuple[Path, bool, tuple[int, int]]] = []
        self.anchors: dict[str, tuple[Any, Path, int, int]] = {}
        self.stack: list[_Frame] = []
        self.budget = MAX_NODES
        # Such characters reach a scalar only through an escape ("\x7f") or raw where YAML allows
        # them (U+0085, U+2028, noncharacters): a file with neither skips the check per scalar.
        self.check_text = may_hold_unsafe(text, data)

    def positions(self) -> Positions:
        # Later entries win, as they would in a loop: comprehensions are just the faster loop.
        entries = self.entries
        values = {path: at for path, is_key, at in entries if not is_key}
        keys = {path: at for path, is_key, at in entries if is_key}
        return Positions(self.file, values, keys)

    def span(self, mark: Any) -> Span:
        return Span(self.file, mark.line + 1, mark.column + 1)

    def build(self) -> Any:
        try:
            return self._run()
        except yaml.MarkedYAMLError as exc:
            raise _Abort(self._syntax_error(exc)) from None
        except yaml.YAMLError as exc:  # pragma: no cover - libyaml always marks its errors
            raise _Abort(error("E005", f"YAML error: {exc}", Span(self.file, 1, 1))) from None
        finally:
            self.parser.dispose()

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> Diagnostic:
        mark = exc.problem_mark or exc.context_mark
        span = self.span(mark) if mark is not None else Span(self.file, 1, 1)
        problem = exc.problem or "invalid YAML"
        if "'\\t'" in problem or (mark is not None and self._char_at(mark.index) == "\t"):
            return error("E004", "a tab character cannot indent YAML; use spaces", span)
        if "nesting depth" in problem:  # libyaml >= 0.2.6 stops deep nesting itself
            return error("E008", f"collections nest too deeply ({problem})", span)
        context = f" {exc.context}" if exc.context else ""
        return error("E005", f"YAML syntax error: {problem}{context}".strip(), span)

    def _char_at(self, index: int) -> str:
        return self.text[index] if 0 <= index < len(self.text) else ""

    def _run(self) -> Any:
        documents = 0
        result: Any = None
        while True:
            event = self.parser.get_event()
            if isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Abort(error("E010", "the file holds more than one YAML document; "
                                       "a spec is exactly one document", self.span(event.start_mark)))
                result = self._document()
        if documents == 0 or result is None:
            raise _Abort(error("E003", "the file is empty; it must hold one Mesh document", Span(self.file, 1, 1)))
        return result

    def _document(self) -> Any:
        root: list[Any] = []
        root_frame = _Frame(root, (), None, 0, False)
        self.stack.append(root_frame)
        self._events(root_frame)
        self.stack.pop()
        return root[0] if root else None

    def _events(self, root_frame: _Frame) -> None:
        """The hot loop: one iteration per libyaml event, ~760,000 of them at 10,000 services.

        Plain scalars as keys and values (nearly every event) are handled inline with locals, since
        a method call and a few attribute lookups per event cost more than libyaml's parse itself;
        anything rarer (tags, anchors, merge keys, aliases, collections) goes through the methods
        below, which keep the budget in self.budget, so the loop syncs its local copy around them.
        """
        get_event = self.parser.get_event
        stack = self.stack
        entries = self.entries
        record = entries.append
        check_text = self.check_text
        maybe_not_string = _MAYBE_NOT_STRING
        scalar_event = yaml.ScalarEvent
        document_end = yaml.DocumentEndEvent
        mapping_start, mapping_end = yaml.MappingStartEvent, yaml.MappingEndEvent
        sequence_start, sequence_end = yaml.SequenceStartEvent, yaml.SequenceEndEvent
        merge_key = _MERGE_KEY
        frame = root_frame
        budget = self.budget
        while True:
            event: Any = get_event()
            kind = type(event)
            if kind is scalar_event and event.anchor is None and event.tag is None:
                if check_text:
                    self._refuse_unsafe_text(event)
                mark = event.start_mark
                line, col = mark.line + 1, mark.column + 1
                text = event.value
                if frame.key_pending:  # only mappings ever wait for a key
                    if text == merge_key and not event.style:
                        frame.key_pending = False
                        frame.key = merge_key
                        continue
                    frame.key_pending = False
                    explicit = frame.explicit
                    if text in explicit:
                        self._duplicate(frame, text, explicit[text], line, col)
                    else:
                        explicit[text] = line
                    frame.key = text
                    record((frame.path + (text,), True, (line, col)))
                    budget -= 1
                    if budget < 0:
                        self.budget = budget
                        self._spend(0, event)
                    continue
                if event.style or not text:
                    value: Any = text if event.style else None
                elif text[0] in maybe_not_string:
                    value = resolve_plain_scalar(text)
                else:
                    value = text
                container = frame.container
                if frame.is_map:
                    key = frame.key
                    start = len(entries)
                    record((frame.path + (key or "",), False, (line, col)))
                    budget -= 1
                    if budget < 0:
                        self.budget = budget
                        self._spend(0, event)
                    skip = frame.skip_value
                    frame.key, frame.key_pending, frame.skip_value = None, True, False
                    if skip or key is None:
                        continue
                    if key == merge_key:
                        frame.merges.append((value, start, len(entries)))
                    elif key not in container:
                        container[key] = value  # type: ignore[call-overload]
                    continue
                record((frame.path + (len(container),) if frame is not root_frame else (), False, (line, col)))
                budget -= 1
                if budget < 0:
                    self.budget = budget
                    self._spend(0, event)
                container.append(value)  # type: ignore[union-attr]
                continue
            if (kind is mapping_start or kind is sequence_start) and not frame.key_pending \
                    and len(stack) <= MAX_DEPTH:
                mark = event.start_mark
                if frame.is_map:
                    path: Path = frame.path + (frame.key or "",)
                elif frame is root_frame:
                    path = ()
                else:
                    path = frame.path + (len(frame.container),)
                start = len(entries)
                record((path, False, (mark.line + 1, mark.column + 1)))
                budget -= 1
                if budget < 0:
                    self.budget = budget
                    self._spend(0, event)
                is_map = kind is mapping_start
                frame = _Frame({} if is_map else [], path, event.anchor, start, is_map)
                stack.append(frame)
                continue
            if kind is mapping_end or kind is sequence_end:
                closed = stack.pop()
                if closed.merges or closed.anchor:
                    self._finish(closed)
                frame = stack[-1]
                self._place(frame, closed.container, closed.entries_start)
                continue
            if kind is document_end:
                break
            self.budget = budget
            self._event(event)
            budget = self.budget
            frame = stack[-1]
        self.budget = budget

    def _event(self, event: Any) -> None:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if self.check_text:
                self._refuse_unsafe_text(event)
            frame = self.stack[-1]
            if frame.key_pending and isinstance(frame.container, dict):
                self._take_key(frame, event)
            else:
                self._node(self._scalar(event), event)
        elif kind is yaml.AliasEvent:
            self._alias(event)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            self._open(event)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            self._close()

    def _duplicate(self, frame: _Frame, key: str, first_line: int, line: int, col: int) -> None:
        self.diagnostics.append(error("E006", f"duplicate key '{key}' (first written on line {first_line})",
                                      Span(self.file, line, col), frame.path + (key,)))

    # -- scalars and keys ------------------------------------------------------------------

    def _refuse_unsafe_text(self, event: yaml.ScalarEvent) -> None:
        """Characters no generated file may hold (meshc.text): an error at the scalar, loading goes on."""
        index = first_unsafe(event.value)
        if index is not None:
            self.diagnostics.append(error(
                "E111", f"the text holds {describe(event.value[index])}, which Envoy or YAML readers refuse or read "
                "as a line break; remove it", self.span(event.start_mark), self.stack[-1].path))

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            return event.value if event.style else resolve_plain_scalar(event.value)
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            resolved = resolve_plain_scalar(event.value)
            if isinstance(resolved, bool):
                return resolved
        converter = _EXPLICIT_TAGS.get(tag)
        if converter is not None:
            try:
                return converter(event.value)
            except ValueError:
                pass
        raise _Abort(error("E012", f"unsupported YAML tag {tag} on '{event.value}'", self.span(event.start_mark)))

    def _take_key(self, frame: _Frame, event: Any) -> bool:
        """Consume a key event for the mapping on top; True when the event was the key."""
        if not frame.key_pending:
            return False
        frame.key_pending = False
        line, col = event.start_mark.line + 1, event.start_mark.column + 1
        if not isinstance(event, yaml.ScalarEvent):
            self.diagnostics.append(error("E011", "a mapping key must be a plain string, not a "
                                          "collection or alias", Span(self.file, line, col), frame.path))
            frame.key, frame.skip_value = None, True
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self._skip_subtree()
            return True
        key = event.value
        if key == _MERGE_KEY and not event.style:
            frame.key = _MERGE_KEY
            return True
        first_line = frame.explicit.get(key)
        if first_line is not None:
            self.diagnostics.append(error("E006", f"duplicate key '{key}' (first written on line {first_line})",
                                          Span(self.file, line, col), frame.path + (key,)))
        frame.explicit.setdefault(key, line)
        frame.key = key
        self.entries.append((frame.path + (key,), True, (line, col)))
        self._spend(1, event)
        return True

    def _skip_subtree(self) -> None:
        depth = 1
        while depth:
            event = self.parser.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1

    # -- placing values ----------------------------------------------------------------------

    def _child_path(self, frame: _Frame) -> Path:
        if frame is self.stack[0]:
            return ()
        if isinstance(frame.container, dict):
            return frame.path + (frame.key or "",)
        return frame.path + (len(frame.container),)

    def _node(self, value: Any, event: Any) -> None:
        """Place a scalar value (keys never reach here: _event routes them to _take_key)."""
        frame = self.stack[-1]
        path = self._child_path(frame)
        start = len(self.entries)
        self.entries.append((path, False, (event.start_mark.line + 1, event.start_mark.column + 1)))
        self._spend(1, event)
        anchor = getattr(event, "anchor", None)
        if anchor:
            self.anchors[anchor] = (value, path, start, len(self.entries))
        self._place(frame, value, start)

    def _place(self, frame: _Frame, value: Any, entries_start: int) -> None:
        container = frame.container
        if isinstance(container, list):
            container.append(value)
            return
        key, skip = frame.key, frame.skip_value
        frame.key, frame.key_pending, frame.skip_value = None, True, False
        if skip or key is None:
            return
        if key == _MERGE_KEY:
            frame.merges.append((value, entries_start, len(self.entries)))
        elif key not in container:
            container[key] = value

    def _alias(self, event: yaml.AliasEvent) -> None:
        frame = self.stack[-1]
        if isinstance(frame.container, dict) and self._take_key(frame, event):
            return
        anchor = self.anchors.get(event.anchor or "")
        span = self.span(event.start_mark)
        if anchor is None:
            raise _Abort(error("E008", f"alias *{event.anchor} refers to an anchor that is not defined "
                               "before it (or refers to itself)", span))
        value, source_path, begin, end = anchor
        path = self._child_path(frame)
        start = len(self.entries)
        self._spend(end - begin, event)
        self.entries.append((path, False, (span.line, span.col)))
        self._copy_entries(begin, end, source_path, path)
        self._place(frame, value, start)

    def _copy_entries(self, begin: int, end: int, old: Path, new: Path) -> None:
        cut = len(old)
        for path, is_key, at in self.entries[begin:end]:
            if path != old:
                self.entries.append((new + path[cut:], is_key, at))

    def _spend(self, nodes: int, event: Any) -> None:
        self.budget -= nodes
        if self.budget >= 0:
            return
        if isinstance(event, yaml.AliasEvent):
            raise _Abort(error("E008", f"aliases expand to more than {MAX_NODES:,} keys and values, more than a "
                               "spec may hold (an alias bomb?)", self.span(event.start_mark)))
        raise _Abort(error("E013", f"the file holds more than {MAX_NODES:,} keys and values, more than a spec may "
                           "hold (10,000 services take about 700,000)", self.span(event.start_mark)))

    # -- collections -------------------------------------------------------------------------

    def _open(self, event: Any) -> None:
        frame = self.stack[-1]
        if isinstance(frame.container, dict) and self._take_key(frame, event):
            return
        if len(self.stack) > MAX_DEPTH:
            raise _Abort(error("E008", f"collections nest deeper than {MAX_DEPTH} levels", self.span(event.start_mark)))
        path = self._child_path(frame)
        start = len(self.entries)
        self.entries.append((path, False, (event.start_mark.line + 1, event.start_mark.column + 1)))
        self._spend(1, event)
        container: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
        self.stack.append(_Frame(container, path, event.anchor, start, isinstance(container, dict)))

    def _close(self) -> None:
        frame = self.stack.pop()
        self._finish(frame)
        self._place(self.stack[-1], frame.container, frame.entries_start)

    def _finish(self, frame: _Frame) -> None:
        """A collection just closed: apply its merge keys, then remember it if it is anchored."""
        if isinstance(frame.container, dict) and frame.merges:
            self._apply_merges(frame)
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.container, frame.path, frame.entries_start, len(self.entries))

    def _apply_merges(self, frame: _Frame) -> None:
        """`<<: *base` / `<<: [*a, *b]`: keys written explicitly win, then earlier sources."""
        assert isinstance(frame.container, dict)
        merge_path = frame.path + (_MERGE_KEY,)
        for value, begin, end in frame.merges:
            sources = [(value, merge_path)] if isinstance(value, dict) else [
                (item, merge_path + (index,)) for index, item in enumerate(value)
            ] if isinstance(value, list) else []
            if not sources or not all(isinstance(item, dict) for item, _ in sources):
                line, col = self.entries[begin][2]
                self.diagnostics.append(error("E005", "a merge key (<<) takes a mapping or a list of mappings",
                                              Span(self.file, line, col), frame.path))
                continue
            for source, source_path in sources:
                for key, item in source.items():
                    if key in frame.container:
                        continue
                    frame.container[key] = item
                    self._rename_entries(begin, end, source_path + (key,), frame.path + (key,))

    def _rename_entries(self, begin: int, end: int, old: Path, new: Path) -> None:
        cut = len(old)
        for path, is_key, at in self.entries[begin:end]:
            if path[:cut] == old:
                self.entries.append((new + path[cut:], is_key, at))
