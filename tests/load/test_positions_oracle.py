"""Every key and value is where libyaml's own composer puts it.

The loader reads libyaml's events (meshc.load.yaml_loader) and keeps their marks; PyYAML's
composer (`yaml.compose` with the C loader) builds its node tree from the same parser independently, so each composed node's start mark is an
oracle for the positions a diagnostic would show.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.gen_mesh import generate
from meshc.load import Positions, SpecSource, load_yaml

Path = tuple[str | int, ...]


def _expected(text: str) -> tuple[dict[Path, tuple[int, int]], dict[Path, tuple[int, int]]]:
    """(key positions, value positions) by data path, 1-based, from the composed node tree; what an
    alias or a merge key brings in is left out (the loader places those where the alias is written)."""
    keys: dict[Path, tuple[int, int]] = {}
    values: dict[Path, tuple[int, int]] = {}
    root = yaml.compose(text, Loader=yaml.CSafeLoader)
    seen: set[int] = set()
    todo: list[tuple[Path, Any]] = [((), root)]
    while todo:
        path, node = todo.pop()
        if id(node) in seen:   # an alias: the same node object as its anchor's
            continue
        seen.add(id(node))
        values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        children: list[tuple[Path, Any]] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == "<<" and key.style is None:
                    continue
                keys[path + (key.value,)] = (key.start_mark.line + 1, key.start_mark.column + 1)
                children.append((path + (key.value,), value))
        elif isinstance(node, yaml.SequenceNode):
            children = [(path + (i,), item) for i, item in enumerate(node.value)]
        todo.extend(reversed(children))   # in the file's order: an anchor is met before its aliases
    return keys, values


def _assert_positions_match(text: str) -> None:
    loaded = load_yaml(SpecSource("m.yaml", text.encode()))
    assert loaded.ok, loaded.diagnostics
    keys, values = _expected(text)
    fresh = Positions("m.yaml", loaded.positions.root)
    for path, (line, col) in values.items():
        span = loaded.positions.value(path)
        assert (span.line, span.col) == (line, col), path
        assert fresh.span(*path) == span, path     # the resolver's form, asked first here
        assert loaded.positions.value(path) is span  # asked again: the same answer
    for path, (line, col) in keys.items():
        span = loaded.positions.key(path)
        assert (span.line, span.col) == (line, col), path


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp", "Co", "Cn")), max_size=12),
    st.sampled_from(["80", "5s", "1.2.3", "off", "yes", "~", "null", "0x1f", "-.5", "<<x", "a: b", "- x"]),
)
_keys = st.one_of(st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
                  st.sampled_from(["80", "true", "null", "a b", "é", "x:y"]))
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=40,
)


@settings(max_examples=60, deadline=None)
@given(document=st.dictionaries(_keys, _documents, min_size=1, max_size=6),
       flow=st.sampled_from([False, True, None]), indent=st.sampled_from([2, 4]),
       style=st.sampled_from([None, "'", '"']), width=st.sampled_from([20, 80]))
def test_positions_of_generated_documents_are_libyaml_s(document: dict[str, Any], flow: bool | None, indent: int,
                                                         style: str | None, width: int) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, indent=indent, default_style=style, width=width,
                          allow_unicode=True, sort_keys=False)
    _assert_positions_match(text)


def test_positions_of_generated_meshes_are_libyaml_s() -> None:
    for seed in (1, 2, 3):   # anchors, aliases and merge keys included: explicit entries compared
        _assert_positions_match(generate(30, seed=seed))
