"""Property: whatever a user does to a valid spec, validate never raises and every diagnostic has
a position inside the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshc.load import SpecSource
from meshc.pipeline import check

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/mesh.yaml"))
SPECS = [yaml.safe_load(p.read_text()) for p in EXAMPLES]

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
