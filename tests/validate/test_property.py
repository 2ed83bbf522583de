"""Property: whatever a user does to a valid spec, validate never raises and every diagnostic has
a position inside the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshc.codes import CODES
from meshc.load import SpecSource
from meshc.pipeline import check

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/mesh.yaml"))
TEXTS = [p.read_text() for p in EXAMPLES]
SPECS = [yaml.safe_load(text) for text in TEXTS]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["2s", "0ms", "-1s", "1.5s", "abc", "round_robin", "maglev", "v1",
                                           "fail_fast", "tcp", "100", "/healthz", "ring_hash", "weighted"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, prefix + (index,))
    return out


def _mutate(spec: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value
    parent = spec
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{last}x"] = parent.pop(last)
    else:
        parent[last] = value
    return spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_specs_never_crash_validate(data: st.DataObject) -> None:
    base = yaml.safe_load(yaml.safe_dump(data.draw(st.sampled_from(SPECS))))
    mutations = data.draw(st.integers(1, 3))
    for _ in range(mutations):
        path = data.draw(st.sampled_from(_paths(base)))
        action = data.draw(st.sampled_from(["set", "delete", "rename"]))
        value = data.draw(values)
        try:
            base = _mutate(base, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue
    text = yaml.safe_dump(base, sort_keys=False) if base is not None else ""
    lines = text.count("\n") + 1
    checked = check(SpecSource("m.yaml", text.encode()))
    assert checked.ok or checked.diagnostics
    for diagnostic in checked.diagnostics:
        assert diagnostic.span is not None
        assert 1 <= diagnostic.span.line <= lines and diagnostic.span.col >= 1
    if checked.ok:
        assert checked.mesh is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_never_crash_validate(raw: bytes) -> None:
    checked = check(SpecSource("m.yaml", raw))
    assert not checked.ok
    assert checked.diagnostics and all(d.span is not None for d in checked.diagnostics)


# Edits to the text that YAML's own features and accidents make: each an (old, new) pair of the
# whole text, tried on a random line of an example.
_LINE_BREAKS = re.compile("\r\n|[\n\r\x85\u2028\u2029]")   # how libyaml, and so every position, counts lines
_TEXT_EDITS: tuple[Callable[[str, st.DataObject], str], ...] = (
    lambda line, data: line + data.draw(st.sampled_from([" &a", " *a", " !!binary", " !!python/object:os.system",
                                                          " !!set", " !!timestamp", " !custom", " !!int", " #"])),
    lambda line, data: line.replace(": ", data.draw(st.sampled_from([": &x ", ": *x ", ": !!str ", ": !!float ",
                                                                      ": !!null ", ": [", ": {", ': "', ": '"])), 1),
    lambda line, data: data.draw(st.sampled_from(["<<: *a", "<<: [*a, 1]", "? [a]\n: 1", "%YAML 1.1\n---", "---",
                                                   "...", "\t" + line, line + "\t# tab", "&a " + line])),
    lambda line, data: line + data.draw(st.sampled_from(["\x7f", "\x85", "\u2028", "\ufeff", "\x1b[31m", "\\"])),
    lambda line, data: "[" * data.draw(st.integers(60, 70)) + line,
    lambda line, data: line[:data.draw(st.integers(0, len(line)))],   # cut off mid-line
)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_text_edits_never_crash_validate_and_positions_stay_in_the_file(data: st.DataObject) -> None:
    """Anchors, tags, directives, tabs, control characters, deep nesting and files cut off at any
    point, in the examples' own text (and with CRLF or CR line ends, or a byte order mark)."""
    text = data.draw(st.sampled_from(TEXTS))
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(lines) - 1))
        lines[index] = data.draw(st.sampled_from(_TEXT_EDITS))(lines[index], data)
    if data.draw(st.booleans()):
        lines = lines[:data.draw(st.integers(1, len(lines)))]   # the file ends there, maybe mid-line
    edited = data.draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    raw = data.draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + edited.encode()
    checked = check(SpecSource("m.yaml", raw))
    last_line = len(_LINE_BREAKS.split(edited))
    assert checked.ok or any(d.is_error for d in checked.diagnostics)
    for diagnostic in checked.diagnostics:
        assert diagnostic.span is not None and diagnostic.code in CODES
        assert 1 <= diagnostic.span.line <= last_line and diagnostic.span.col >= 1, diagnostic
