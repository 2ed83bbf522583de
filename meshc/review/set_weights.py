"""Editing version weights in mesh.yaml in place, as a person or a canary-promotion bot would.

ruamel.yaml's round-trip parser finds each weight: the exact characters of its value, and whether
it is written there, reached through an alias, or merged in with `<<`. Only those characters are
replaced (or one `weight:` entry is added next to the version's name). The document is never
re-serialized: a dump would re-flow multi-line flow mappings and re-indent, while a pull request
must show exactly the weight lines. The edited text is then read again and compared with the
intent (nothing but the named weights may change), validated, and only then written, atomically.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.diagnostics import Diagnostic, MeshcError, Span, error
from meshc.load import SpecSource

EXIT_INVALID = 1
EXIT_USAGE = 2
WEIGHT_KEY = "weight"
_ASSIGNMENT = re.compile(r"^(?P<version>[^=\s]+)=(?P<weight>[0-9]+)$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PLAIN_TOKEN = re.compile(r"[^\s,\[\]{}#]+")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class WeightChange:
    version: str
    old: int | None
    new: int


@dataclass(frozen=True, slots=True)
class WeightEdit:
    """The result of planning an edit: both texts, what changed, and the edited spec's diagnostics."""

    path: str
    service: str
    original: str
    edited: str
    changes: tuple[WeightChange, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def changed(self) -> bool:
        return self.original != self.edited

    def unified_diff(self) -> str:
        return "".join(difflib.unified_diff(self.original.splitlines(keepends=True),
                                            self.edited.splitlines(keepends=True),
                                            fromfile=_diff_name("a", self.path),
                                            tofile=_diff_name("b", self.path)))


def _diff_name(side: str, path: str) -> str:
    return path if os.path.isabs(path) else f"{side}/{path}"


# --- arguments ----------------------------------------------------------------------------

def parse_assignments(items: Sequence[str]) -> dict[str, int]:
    """`["v1=70", "v2=30"]` -> {"v1": 70, "v2": 30}; malformed or repeated versions are usage errors."""
    weights: dict[str, int] = {}
    problems = []
    for item in items:
        match = _ASSIGNMENT.match(item)
        if match is None or int(match["weight"]) > 100:
            problems.append(error("E404", f"'{item}' is not VERSION=WEIGHT with a weight from 0 to 100", None,
                                  hint="for example: stable=90 canary=10"))
        elif match["version"] in weights:
            problems.append(error("E404", f"version '{match['version']}' is given twice", None))
        else:
            weights[match["version"]] = int(match["weight"])
    if problems:
        raise MeshcError(problems, EXIT_USAGE)
    return weights


# --- planning -----------------------------------------------------------------------------

def plan_weights(path: str, text: str, service: str, weights: Mapping[str, int]) -> WeightEdit:
    """The edited text and its diagnostics; raises MeshcError when the edit cannot be made."""
    from meshc.pipeline import check

    bom = _BOM if text.startswith(_BOM) else ""
    body = text[len(bom):]
    document = _round_trip_load(path, body)
    versions = _versions_of(path, body, document, service)
    edits, changes = _plan_edits(path, body, service, versions, weights)
    edited_body = _apply(body, edits)
    _verify_only_weights_changed(path, body, edited_body, service, weights)
    edited = bom + edited_body
    checked = check(SpecSource(name=path, data=edited.encode("utf-8")))
    return WeightEdit(path, service, text, edited, tuple(changes), checked.diagnostics)


def _round_trip_load(path: str, text: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="rt", pure=True).load(text)
    except YAMLError as exc:
        raise _invalid_file(path, text) from exc


def _invalid_file(path: str, text: str) -> MeshcError:
    """The loader's own positioned diagnostics explain a file that does not parse."""
    from meshc.pipeline import check

    found = [d for d in check(SpecSource(name=path, data=text.encode("utf-8"))).diagnostics if d.is_error]
    return MeshcError(found or [error("E005", f"{path}: not a YAML document meshc can edit", None)], EXIT_INVALID)


def _span(path: str, node: Any, key: str | int | None = None) -> Span | None:
    """1-based position of a key (or of the node itself) as ruamel recorded it."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        line, col = lc.key(key) if isinstance(key, str) else (lc.item(key) if key is not None else (lc.line, lc.col))
    except (KeyError, IndexError, TypeError):
        line, col = lc.line, lc.col
    return Span(path, int(line) + 1, int(col) + 1)


def _versions_of(path: str, text: str, document: Any, service: str) -> list[Any]:
    services = _services(path, text, document)
    found = [s for s in services if isinstance(s, Mapping) and s.get("name") == service]
    if not found:
        names = sorted(str(s.get("name")) for s in services if isinstance(s, Mapping))
        close = difflib.get_close_matches(service, names, n=1, cutoff=0.6)
        suffix = f"; did you mean '{close[0]}'?" if close else ""
        raise MeshcError([error("E401", f"service '{service}' is not in spec.services{suffix}",
                                _span(path, document["spec"], "services"),
                                hint=f"services: {', '.join(names)}")], EXIT_INVALID)
    entry = found[0]
    versions = entry.get("versions")
    if not isinstance(versions, list) or not versions:
        what = "is an external service (static endpoints)" if "endpoints" in entry else "declares no versions"
        raise MeshcError([error("E403", f"service '{service}' {what}: it has no versions to weigh",
                                _span(path, entry, "name"),
                                hint="declare versions (each with a weight) to split traffic")], EXIT_INVALID)
    return versions


def _services(path: str, text: str, document: Any) -> list[Any]:
    spec = document.get("spec") if isinstance(document, Mapping) else None
    services = spec.get("services") if isinstance(spec, Mapping) else None
    if not isinstance(services, list):
        failure = _invalid_file(path, text)
        if not failure.diagnostics or failure.diagnostics[0].code == "E005" and failure.diagnostics[0].span is None:
            failure = MeshcError([error("E102", f"{path} has no spec.services list", None)], EXIT_INVALID)
        raise failure
    return services


@dataclass(frozen=True, slots=True)
class _Splice:
    """Replace text[start:end] (absolute offsets in the document) with `text`."""

    start: int
    end: int
    text: str


def _plan_edits(path: str, text: str, service: str, versions: list[Any],
                weights: Mapping[str, int]) -> tuple[list[_Splice], list[WeightChange]]:
    by_name = {str(v.get("name")): v for v in versions if isinstance(v, Mapping)}
    unknown = [name for name in weights if name not in by_name]
    if unknown:
        raise MeshcError([
            error("E402", f"service '{service}' has no version '{name}'", _span(path, versions),
                  hint=f"versions of '{service}': {', '.join(sorted(by_name))}")
            for name in unknown
        ], EXIT_INVALID)
    lines = _Lines(text)
    splices = []
    changes = []
    for name, weight in weights.items():
        version = by_name[name]
        old = version.get(WEIGHT_KEY)
        changes.append(WeightChange(name, old if isinstance(old, int) else _int_or_none(old), weight))
        if _int_or_none(old) == weight and isinstance(old, int | str):
            continue
        splices.append(_weight_splice(path, lines, version, name, weight))
    return splices, changes


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _weight_splice(path: str, lines: _Lines, version: Any, name: str, weight: int) -> _Splice:
    own = getattr(version, "lc", None) is not None and WEIGHT_KEY in version.lc.data
    if own:
        return _replace_value(path, lines, version, name, weight)
    return _insert_weight(path, lines, version, name, weight)


def _replace_value(path: str, lines: _Lines, version: Any, name: str, weight: int) -> _Splice:
    line, col = version.lc.key(WEIGHT_KEY)
    start = _value_start(lines, lines.offset(line, col))
    char = lines.text[start] if start < len(lines.text) else ""
    if char == "&":
        # An anchored weight may be aliased elsewhere; the verification below refuses the edit if so.
        start = _skip_spaces(lines.text, _token_end(lines.text, start))
        char = lines.text[start] if start < len(lines.text) else ""
    if char in "\"'":
        end = _quoted_end(lines.text, start)
        return _Splice(start + 1, end - 1, str(weight))
    if char in "|>!" or not char:
        raise MeshcError([error("E405", f"the weight of version '{name}' is not a plain number; edit it by hand",
                                _span(path, version, WEIGHT_KEY))], EXIT_INVALID)
    # A plain scalar, or an alias (`*w`): either way the token becomes the number.
    return _Splice(start, _token_end(lines.text, start), str(weight))


def _insert_weight(path: str, lines: _Lines, version: Any, name: str, weight: int) -> _Splice:
    """No `weight:` of its own (absent, or merged in with `<<`): add one right after `name:`."""
    if "name" not in version.lc.data:
        raise MeshcError([error("E405", f"version '{name}' has no weight of its own to edit and its name is "
                                "not written in it; edit it by hand", _span(path, version))], EXIT_INVALID)
    line, col = version.lc.key("name")
    value = _value_start(lines, lines.offset(line, col))
    end = _quoted_end(lines.text, value) if lines.text[value] in "\"'" else _token_end(lines.text, value)
    if version.fa.flow_style():
        return _Splice(end, end, f", {WEIGHT_KEY}: {weight}")
    rest = lines.text[end:lines.line_end(line)]
    if rest.strip() and not rest.strip().startswith("#"):
        raise MeshcError([error("E405", f"cannot add a weight to version '{name}' in place; edit it by hand",
                                _span(path, version))], EXIT_INVALID)
    at = lines.line_end(line)
    return _Splice(at, at, f"{lines.newline}{' ' * col}{WEIGHT_KEY}: {weight}")


# --- text positions -----------------------------------------------------------------------

class _Lines:
    """Offsets of line starts, so (line, col) from the parser maps to an index into the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]
        first = _LINE_BREAK.search(text)
        self.newline = first.group() if first else "\n"

    def offset(self, line: int, col: int) -> int:
        return self.starts[line] + col

    def line_end(self, line: int) -> int:
        """Offset of the line break ending `line` (or of the end of the text)."""
        match = _LINE_BREAK.search(self.text, self.starts[line])
        return match.start() if match else len(self.text)


def _value_start(lines: _Lines, key_offset: int) -> int:
    """From a key's first character, the first character of its value (past `:`, spaces, comments)."""
    text = lines.text
    position = _quoted_end(text, key_offset) if text[key_offset] in "\"'" else key_offset
    colon = text.index(":", position)
    return _skip_spaces(text, colon + 1, across_lines=True)


def _skip_spaces(text: str, position: int, across_lines: bool = False) -> int:
    while position < len(text):
        char = text[position]
        if char in " \t" or (across_lines and char in "\r\n"):
            position += 1
        elif across_lines and char == "#":
            match = _LINE_BREAK.search(text, position)
            position = match.end() if match else len(text)
        else:
            break
    return position


def _token_end(text: str, start: int) -> int:
    match = _PLAIN_TOKEN.match(text, start)
    return match.end() if match else start


def _quoted_end(text: str, start: int) -> int:
    """Offset just past the closing quote of the quoted scalar starting at `start`."""
    quote = text[start]
    position = start + 1
    while position < len(text):
        char = text[position]
        if quote == '"' and char == "\\":
            position += 2
            continue
        if char == quote:
            if quote == "'" and text[position + 1:position + 2] == "'":
                position += 2
                continue
            return position + 1
        position += 1
    return len(text)


def _apply(text: str, splices: list[_Splice]) -> str:
    for splice in sorted(splices, key=lambda s: s.start, reverse=True):
        text = text[:splice.start] + splice.text + text[splice.end:]
    return text


# --- verification -------------------------------------------------------------------------

def _verify_only_weights_changed(path: str, before: str, after: str, service: str,
                                 weights: Mapping[str, int]) -> None:
    """Read the edited text again: the named weights are the new values and nothing else moved."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        old = _plain(YAML(typ="safe", pure=True).load(before))
        new = _plain(YAML(typ="safe", pure=True).load(after))
    except YAMLError:
        raise MeshcError([error("E405", "the edited file no longer parses; edit the weights by hand", None)],
                         EXIT_INVALID) from None
    expected = copy.deepcopy(old)
    for version in _named_versions(expected, service):
        if version.get("name") in weights:
            version[WEIGHT_KEY] = weights[str(version["name"])]
    for version in _named_versions(new, service):
        if version.get("name") in weights and _int_or_none(version.get(WEIGHT_KEY)) is not None:
            version[WEIGHT_KEY] = _int_or_none(version[WEIGHT_KEY])
    if new != expected:
        raise MeshcError([error("E405", f"changing the weights of '{service}' in place would change other values "
                                "too (they share a YAML anchor or alias); edit the file by hand", None)],
                         EXIT_INVALID)


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    return node


def _named_versions(document: Any, service: str) -> Iterator[dict[str, Any]]:
    for entry in document.get("spec", {}).get("services", []) or []:
        if isinstance(entry, dict) and entry.get("name") == service:
            for version in entry.get("versions") or []:
                if isinstance(version, dict):
                    yield version
            return


# --- writing ------------------------------------------------------------------------------

def write_atomically(path: str, text: str) -> None:
    """Replace the file by rename (readers never see half a file), keeping its permission bits.

    A symbolic link is kept: its target is the file that gets replaced.
    """
    target = os.path.realpath(path)
    mode = os.stat(target).st_mode & 0o7777
    directory = os.path.dirname(target) or "."
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(text.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
