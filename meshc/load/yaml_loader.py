"""A positioned YAML loader driven by libyaml's event stream.

Why events and not `yaml.compose`: composing node objects costs ~5x the parse itself and grows
faster than linearly on large specs, and libyaml's composer recurses in C (deep nesting crashes
the interpreter). Building plain data straight from events is iterative, linear, and lets us
record where every key and value was written (meshc.load.positions), detect duplicate keys, bound
alias expansion and resolve scalars with the YAML 1.2 core schema (so `off` and `yes` stay strings,
as people mean).
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshc.diagnostics import Diagnostic, Path, Span, error, warning
from meshc.load.positions import Mark, Node, Position, Positions, size
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
_LINE_BREAKS = "\n\r\x85\u2028\u2029"   # what libyaml counts lines by


@dataclass(slots=True)
class Loaded:
    """A loaded spec: its data (None when it is not one YAML document), positions and diagnostics."""

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
    empty = Positions(source.name)
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


_NO_KEYS: dict[str, Mark] = {}   # a sequence's: never written to, shared
_NO_MERGES: list[tuple[Any, Position]] = []   # a mapping's until it meets `<<`: never written to, shared
_MISSING = object()
_KNOWN_SCALARS = 4096


class _Frame(Node):
    """A mapping or sequence under construction, and its positions (a plain slotted class: one is
    made per collection, and once closed it stays in the positions as the collection's Node)."""

    __slots__ = ("container", "anchor", "level", "key", "key_pending", "merges", "is_map")

    def __init__(self, at: Mark, container: dict[str, Any] | list[Any], anchor: str | None,
                 level: int, is_map: bool) -> None:
        # Node's fields set here rather than through Node.__init__: one call less per collection.
        self.at = at
        self.keys = {} if is_map else _NO_KEYS
        self.values = {} if is_map else []
        self.container = container
        self.anchor = anchor
        self.level = level       # _Builder.level() before the collection's own node: for its size
        self.key: str | None = None
        self.key_pending = is_map  # only a mapping ever waits for a key
        self.merges: list[tuple[Any, Position]] = _NO_MERGES  # each `<<` value, and its positions
        self.is_map = is_map

    def part(self) -> str | int:
        """The path part of the child being built in this collection."""
        return (self.key or "") if self.is_map else len(self.container)


class _Builder:
    """Consumes libyaml events and builds plain data; keeps each node's mark beside it (a Node)."""

    def __init__(self, file: str, text: str, data: bytes) -> None:
        self.file = file
        self.text = text
        self.parser = _Parser(text)
        self.diagnostics: list[Diagnostic] = []
        self.anchors: dict[str, tuple[Any, Position, int]] = {}  # value, positions, size in nodes
        self.stack: list[_Frame] = []
        self.budget = MAX_NODES
        # Keys and values merge keys copied: they count in the size of an anchor that holds them
        # (an alias of it pays for them) but were never spent themselves.
        self.merged = 0
        self.root: Position | None = None
        # Such characters reach a scalar only through an escape ("\x7f") or raw where YAML allows
        # them (U+0085, U+2028, noncharacters): a file with neither skips the check per scalar.
        self.check_text = may_hold_unsafe(text, data)

    def positions(self) -> Positions:
        return Positions(self.file, self.root)

    def level(self) -> int:
        """Falls by one per key or value recorded: the size of a subtree is the fall across it."""
        return self.budget - self.merged

    def span(self, mark: Any) -> Span:
        return Span(self.file, mark.line + 1, mark.column + 1)

    def path(self, frames: list[_Frame]) -> Path:
        """The path of the node being built inside the last of frames (the first is the document's)."""
        return tuple(frame.part() for frame in frames[1:])

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
        span = self._inside(mark) if mark is not None else Span(self.file, 1, 1)
        problem = exc.problem or "invalid YAML"
        if "'\\t'" in problem or (mark is not None and self._char_at(mark.index) == "\t"):
            return error("E004", "a tab character cannot indent YAML; use spaces", span)
        if "nesting depth" in problem:  # libyaml >= 0.2.6 stops deep nesting itself
            return error("E008", f"collections nest too deeply ({problem})", span)
        context = f" {exc.context}" if exc.context else ""
        return error("E005", f"YAML syntax error: {problem}{context}".strip(), span)

    def _inside(self, mark: Any) -> Span:
        """The span of a syntax error's mark. libyaml may mark the end of a file that does not end in
        a line break at the start of a line past its last one, a position no editor can go to: such
        a mark becomes the end of the last line."""
        text = self.text
        if mark.index < len(text) or mark.column or not text or text[-1] in _LINE_BREAKS:
            return self.span(mark)
        last_break = max(text.rfind(char) for char in _LINE_BREAKS)
        return Span(self.file, mark.line, len(text) - last_break)

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
                result = self._document(_start(event))
        if documents == 0 or result is None:
            raise _Abort(error("E003", "the file is empty; it must hold one Mesh document", Span(self.file, 1, 1)))
        return result

    def _document(self, at: Mark) -> Any:
        # The document is the one item of a sequence that is not part of the data.
        document = _Frame(at, [], None, 0, False)
        self.stack.append(document)
        try:
            self._events(document)
        finally:   # what was read so far is where an error's positions come from
            self.root = document.values[0] if isinstance(document.values, list) and document.values else None
        self.stack.pop()
        return document.container[0] if isinstance(document.container, list) and document.container else None

    def _events(self, document: _Frame) -> None:
        """The hot loop: one iteration per libyaml event, ~760,000 of them at 10,000 services.

        Plain scalars as keys and values and collection starts and ends (nearly every event) are
        handled inline with locals, since a method call and a few attribute lookups per event cost
        more than libyaml's parse itself; each keeps its event's mark as its position, which costs
        nothing more. Anything rarer (tags, anchors, merge keys, aliases, collection keys) goes
        through the methods below, which keep the budget in self.budget, so the loop syncs its
        local copy around them.
        """
        get_event = self.parser.get_event
        stack = self.stack
        check_text = self.check_text
        maybe_not_string = _MAYBE_NOT_STRING
        # Values that may not be strings ("80", "5s", "true") repeat throughout a spec: each text is
        # resolved once, up to a bound, so that a file of millions of distinct numbers is not kept twice.
        known: dict[str, Any] = {}
        resolved = known.get
        missing = _MISSING
        scalar_event = yaml.ScalarEvent
        document_end = yaml.DocumentEndEvent
        mapping_start, mapping_end = yaml.MappingStartEvent, yaml.MappingEndEvent
        sequence_start, sequence_end = yaml.SequenceStartEvent, yaml.SequenceEndEvent
        merge_key = _MERGE_KEY
        frame = document
        budget = self.budget
        while True:
            event: Any = get_event()
            kind = type(event)
            if kind is scalar_event and event.anchor is None and event.tag is None:
                if check_text:
                    self._refuse_unsafe_text(event)
                mark = event.start_mark
                text = event.value
                if frame.key_pending:  # only mappings ever wait for a key
                    frame.key_pending = False
                    if text == merge_key and not event.style:
                        frame.key = merge_key
                        continue
                    keys = frame.keys
                    if text in keys:
                        self._duplicate(text, keys[text], mark)
                    else:
                        keys[text] = mark
                    frame.key = text
                    budget -= 1
                    if budget < 0:
                        self.budget = budget
                        self._spend(0, event)
                    continue
                if event.style or not text:
                    value: Any = text if event.style else None
                elif text[0] in maybe_not_string:
                    value = resolved(text, missing)
                    if value is missing:
                        value = resolve_plain_scalar(text)
                        if len(known) < _KNOWN_SCALARS:
                            known[text] = value
                else:
                    value = text
                budget -= 1
                if budget < 0:
                    self.budget = budget
                    self._spend(0, event)
                container = frame.container
                if frame.is_map:
                    key = frame.key
                    frame.key, frame.key_pending = None, True
                    if key is None:    # the value of a key that was refused (E011)
                        continue
                    frame.values[key] = mark  # type: ignore[call-overload]
                    if key == merge_key:
                        self._merge(frame, value, mark)
                    elif key not in container:
                        container[key] = value  # type: ignore[call-overload]
                    continue
                frame.values.append(mark)  # type: ignore[union-attr]
                container.append(value)  # type: ignore[union-attr]
                continue
            if (kind is mapping_start or kind is sequence_start) and not frame.key_pending \
                    and len(stack) <= MAX_DEPTH:
                is_map = kind is mapping_start
                opened = _Frame(event.start_mark, {} if is_map else [], event.anchor, budget - self.merged, is_map)
                budget -= 1
                if budget < 0:
                    self.budget = budget
                    self._spend(0, event)
                if not frame.is_map:
                    frame.values.append(opened)  # type: ignore[union-attr]
                elif frame.key is not None:
                    frame.values[frame.key] = opened  # type: ignore[call-overload]
                stack.append(opened)
                frame = opened
                continue
            if kind is mapping_end or kind is sequence_end:
                closed = stack.pop()
                if closed.merges or closed.anchor:
                    self.budget = budget
                    self._finish(closed)
                frame = stack[-1]
                value = closed.container
                container = frame.container
                if frame.is_map:   # what _place does, inline: one call less per collection
                    key = frame.key
                    frame.key, frame.key_pending = None, True
                    if key is None:
                        continue
                    if key == merge_key:
                        self._merge(frame, value, closed)
                    elif key not in container:
                        container[key] = value  # type: ignore[call-overload]
                    continue
                container.append(value)  # type: ignore[union-attr]
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
            if not (frame.key_pending and self._take_key(frame, event)):
                self._node(self._scalar(event), event)
        elif kind is yaml.AliasEvent:
            self._alias(event)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            self._open(event)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            self._close()

    def _duplicate(self, key: str, first: Mark, mark: Mark) -> None:
        self.diagnostics.append(error("E006", f"duplicate key '{key}' (first written on line {first.line + 1})",
                                      self.span(mark), self.path(self.stack[:-1]) + (key,)))

    # -- scalars and keys ------------------------------------------------------------------

    def _refuse_unsafe_text(self, event: yaml.ScalarEvent) -> None:
        """Characters no generated file may hold (meshc.text): an error at the scalar, loading goes on."""
        index = first_unsafe(event.value)
        if index is not None:
            self.diagnostics.append(error(
                "E111", f"the text holds {describe(event.value[index])}, which Envoy or YAML readers refuse or read "
                "as a line break; remove it", self.span(event.start_mark), self.path(self.stack[:-1])))

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
        if not isinstance(event, yaml.ScalarEvent):
            self.diagnostics.append(error("E011", "a mapping key must be a plain string, not a collection or alias",
                                          self.span(event.start_mark), self.path(self.stack[:-1])))
            frame.key = None   # its value is read and dropped
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self._skip_subtree()
            return True
        key = event.value
        if key == _MERGE_KEY and not event.style:
            frame.key = _MERGE_KEY
            return True
        first = frame.keys.get(key)
        if first is not None:
            self._duplicate(key, first, _start(event))
        else:
            frame.keys[key] = _start(event)
        frame.key = key
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

    @staticmethod
    def _record(frame: _Frame, position: Position) -> None:
        """Keep where the child being built in frame was written (not the value of a refused key)."""
        if not frame.is_map:
            frame.values.append(position)  # type: ignore[union-attr]
        elif frame.key is not None:
            frame.values[frame.key] = position  # type: ignore[call-overload]

    def _node(self, value: Any, event: Any) -> None:
        """Place a scalar value (keys never reach here: _event routes them to _take_key)."""
        frame = self.stack[-1]
        mark = event.start_mark
        self._record(frame, mark)
        self._spend(1, event)
        anchor = getattr(event, "anchor", None)
        if anchor:
            self.anchors[anchor] = (value, mark, 1)
        self._place(frame, value, mark)

    def _place(self, frame: _Frame, value: Any, position: Position) -> None:
        container = frame.container
        if isinstance(container, list):
            container.append(value)
            return
        key = frame.key
        frame.key, frame.key_pending = None, True
        if key is None:
            return
        if key == _MERGE_KEY:
            self._merge(frame, value, position)
        elif key not in container:
            container[key] = value

    @staticmethod
    def _merge(frame: _Frame, value: Any, position: Position) -> None:
        """A `<<` value, applied when its mapping closes (keys written after it still win)."""
        if frame.merges is _NO_MERGES:
            frame.merges = []
        frame.merges.append((value, position))

    def _alias(self, event: yaml.AliasEvent) -> None:
        frame = self.stack[-1]
        if self._take_key(frame, event):
            return
        anchor = self.anchors.get(event.anchor or "")
        if anchor is None:
            raise _Abort(error("E008", f"alias *{event.anchor} refers to an anchor that is not defined "
                               "before it (or refers to itself)", self.span(event.start_mark)))
        value, anchored, nodes = anchor
        self._spend(nodes, event)
        # The alias is written here; what it expands to, where the anchor's entries are.
        mark = _start(event)
        position = Node(mark, anchored.keys, anchored.values) if isinstance(anchored, Node) else mark
        self._record(frame, position)
        self._place(frame, value, position)

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
        if self._take_key(frame, event):
            return
        if len(self.stack) > MAX_DEPTH:
            raise _Abort(error("E008", f"collections nest deeper than {MAX_DEPTH} levels", self.span(event.start_mark)))
        is_map = isinstance(event, yaml.MappingStartEvent)
        opened = _Frame(event.start_mark, {} if is_map else [], event.anchor, self.level(), is_map)
        self._record(frame, opened)
        self._spend(1, event)
        self.stack.append(opened)

    def _close(self) -> None:
        frame = self.stack.pop()
        self._finish(frame)
        self._place(self.stack[-1], frame.container, frame)

    def _finish(self, frame: _Frame) -> None:
        """A collection just closed: apply its merge keys, then remember it if it is anchored."""
        if frame.merges:
            self._apply_merges(frame)
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.container, frame, frame.level - self.level())

    def _apply_merges(self, frame: _Frame) -> None:
        """`<<: *base` / `<<: [*a, *b]`: keys written explicitly win, then earlier sources; a merged
        key keeps the positions of where it is written in its source."""
        assert isinstance(frame.container, dict)
        for value, position in frame.merges:
            sources: list[tuple[Any, Position]] = []
            if isinstance(value, dict):
                sources = [(value, position)]
            elif isinstance(value, list) and isinstance(position, Node) and isinstance(position.values, list):
                sources = list(zip(value, position.values))
            if not sources or not all(isinstance(item, dict) for item, _ in sources):
                self.diagnostics.append(error("E005", "a merge key (<<) takes a mapping or a list of mappings",
                                              self.span(_at(position)), self.path(self.stack)))
                continue
            for source, source_position in sources:
                for key, item in source.items():
                    if key not in frame.container:
                        frame.container[key] = item
                        self._copy_positions(source_position, key, frame)

    def _copy_positions(self, source: Position, key: str, frame: _Frame) -> None:
        if not isinstance(source, Node) or not isinstance(source.values, dict):
            return  # pragma: no cover - a mapping's positions are always a Node of a dict
        key_at, value_at = source.keys.get(key), source.values.get(key)
        if key_at is not None:
            frame.keys[key] = key_at
            self.merged += 1
        if value_at is not None:
            frame.values[key] = value_at  # type: ignore[call-overload]
            self.merged += size(value_at)


def _start(event: yaml.Event) -> Mark:
    mark = event.start_mark
    assert mark is not None, "libyaml marks every event"
    return mark


def _at(position: Position) -> Mark:
    return position.at if isinstance(position, Node) else position
