"""Every key and value is where libyaml's own composer puts it, and the loader leaves PyYAML as it found it.

The loader reads libyaml's events (made as meshc's own event classes while it runs, see
meshc.load.yaml_loader) and keeps their marks; PyYAML's composer (`yaml.compose` with the C loader)
builds its node tree from the same parser independently, so each composed node's start mark is an
oracle for the positions a diagnostic would show.
"""

from __future__ import annotations

import threading
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.gen_mesh import generate
from meshc.load import Positions, SpecSource, load_yaml, yaml_loader

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


@settings(max_examples=150, deadline=None)
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


def test_libyaml_events_are_made_as_meshc_s_classes_only_while_a_spec_loads() -> None:
    binding = yaml_loader._libyaml_binding
    assert binding is not None, "PyYAML is built with libyaml here"
    originals = {name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS}
    made: list[Any] = []
    with yaml_loader._fast_events():
        parser = yaml.CSafeLoader("a: &x [1, {b: 'c'}]\n")
        while not isinstance(event := parser.get_event(), yaml.StreamEndEvent):
            made.append(event)
        parser.dispose()
    # an upgrade of PyYAML whose binding no longer calls the classes by these names would load
    # correctly but slowly: this says so
    fast = [event for event in made if type(event) in {f for _, f, _ in yaml_loader._FAST_EVENTS.values()}]
    assert len(fast) == 10   # 3 collections, their 3 ends and 4 scalars (a, 1, b, 'c'): every one
    assert {name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS} == originals
    # what another reader of the binding would get meanwhile behaves as PyYAML's own events
    sequence = next(event for event in made if isinstance(event, yaml.SequenceStartEvent))
    assert (sequence.anchor, sequence.tag, sequence.implicit, sequence.flow_style) == ("x", None, True, True)
    assert (sequence.start_mark.line, sequence.start_mark.column) == (0, 3)
    quoted = next(event for event in made if isinstance(event, yaml.ScalarEvent) and event.value == "c")
    assert (quoted.style, quoted.implicit, quoted.anchor, quoted.tag) == ("'", (False, True), None, None)
    assert repr(quoted) == "ScalarEvent(anchor=None, tag=None, implicit=(False, True), value='c')"
    assert quoted.end_mark.column == quoted.start_mark.column + 3


def test_loads_in_threads_at_once_give_what_one_load_gives_and_leave_pyyaml_as_it_was() -> None:
    text = generate(20, seed=4)
    alone = load_yaml(SpecSource("m.yaml", text.encode()))
    binding = yaml_loader._libyaml_binding
    originals = {name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS}
    results: list[Any] = []

    def load() -> None:
        for _ in range(5):
            results.append(load_yaml(SpecSource("m.yaml", text.encode())))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20
    keys, values = _expected(text)
    for loaded in results:
        assert loaded.ok and loaded.data == alone.data
        for path in values:
            assert loaded.positions.value(path) == alone.positions.value(path), path
    assert {name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS} == originals
    assert yaml_loader._swap_users == 0


def test_the_pure_parser_s_events_are_read_the_same_way() -> None:
    text = generate(5, seed=6)
    with_libyaml = load_yaml(SpecSource("m.yaml", text.encode()))
    read = yaml_loader._as_fast(yaml.SafeLoader(text).get_event)
    kinds = set()
    while not isinstance(event := read(), yaml.StreamEndEvent):
        kinds.add(type(event))
        if isinstance(event, yaml.ScalarEvent):
            assert type(event) is yaml_loader._ScalarEvent and event.args[3] == event.value
    assert {yaml_loader._ScalarEvent, yaml_loader._MappingStartEvent, yaml_loader._MappingEndEvent,
            yaml_loader._SequenceStartEvent, yaml_loader._SequenceEndEvent} <= kinds
    assert with_libyaml.ok


def test_a_child_forked_while_another_thread_loads_has_pyyaml_s_classes_and_loads() -> None:
    import os

    binding = yaml_loader._libyaml_binding
    originals = {name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS}
    with yaml_loader._fast_events():     # as if another thread were loading when the fork came
        pid = os.fork()
        if pid == 0:   # the child: report by exit status only
            ok = ({name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS} == originals
                  and yaml_loader._swap_users == 0 and load_yaml(SpecSource("m.yaml", b"a: [1]\n")).data == {"a": [1]}
                  and yaml_loader._swap_users == 0)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert yaml_loader._swap_users == 1   # the parent's own load goes on
    assert os.waitstatus_to_exitcode(status) == 0
    assert {name: getattr(binding, name) for name in yaml_loader._FAST_EVENTS} == originals
