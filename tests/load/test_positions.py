"""Positions kept in the shape of the data: lookups by path, through aliases and merge keys."""

from __future__ import annotations

from meshc.load import Positions, SpecSource, load_yaml


def positions(text: str) -> Positions:
    loaded = load_yaml(SpecSource("m.yaml", text.encode()))
    assert loaded.ok, loaded.diagnostics
    return loaded.positions


def at(span: object) -> tuple[int, int]:
    return span.line, span.col  # type: ignore[attr-defined]


ANCHORED = "base: &b\n  x: 1\n  y: [7, 8]\nsvc:\n  <<: *b\n  y: 3\nlist:\n- *b\n- [*b]\n"


def test_an_alias_is_where_it_is_written_and_its_entries_where_the_anchor_has_them() -> None:
    p = positions(ANCHORED)
    assert at(p.value(("list", 0))) == (8, 3)
    assert at(p.value(("list", 0, "y", 1))) == (3, 10)
    assert at(p.key(("list", 0, "x"))) == (2, 3)
    assert at(p.value(("list", 1, 0, "x"))) == (2, 6)


def test_merged_keys_are_where_their_source_writes_them_explicit_keys_where_they_are() -> None:
    p = positions(ANCHORED)
    assert at(p.key(("svc", "x"))) == (2, 3) and at(p.value(("svc", "x"))) == (2, 6)
    assert at(p.key(("svc", "y"))) == (6, 3) and at(p.value(("svc", "y"))) == (6, 6)
    assert not p.has(("svc", "y", 0))   # the merged [7, 8] lost to the explicit y


def test_a_list_of_merge_sources_keeps_each_source_s_positions() -> None:
    p = positions("a: &a {k: 1}\nb: &b {k: 2, n: 2}\nc:\n  <<: [*a, *b]\n")
    assert at(p.value(("c", "k"))) == (1, 11)
    assert at(p.value(("c", "n"))) == (2, 17)


def test_has_is_exact_and_value_falls_back_to_the_nearest_written_ancestor() -> None:
    p = positions("a:\n  b: [1, {c: 2}]\n")
    assert p.has(("a", "b", 1, "c")) and p.has(("a", "b", 0))
    assert not p.has(("a", "b", 2)) and not p.has(("a", "b", "0")) and not p.has(("a", "b", 0, "x"))
    assert at(p.value(("a", "b", 1, "missing", 3))) == (2, 10)
    assert at(p.value(("a", "b", 0, "below-a-scalar"))) == (2, 7)
    assert at(p.key(("a", "b", 1))) == (2, 10)   # a sequence item has no key: its value
    assert at(p.key(("a", "nope"))) == (2, 3)    # nor has what is not written: the nearest ancestor


def test_a_document_that_is_one_scalar_and_an_empty_one_have_positions() -> None:
    assert at(positions("  hello\n").value(())) == (1, 3)
    assert at(positions("a: 1\n").value(("a",))) == (1, 4)
    assert at(Positions("m.yaml").value(("a",))) == (1, 1) and not Positions("m.yaml").has(())


def test_last_line_is_the_last_value_written_under_a_path() -> None:
    p = positions("a:\n  - x\n  - [y,\n     z]\nb: &b\n  c: 1\n\n  d: 2\ne: [*b, *b]\nf: 0\n")
    assert p.last_line(("a",)) == 4
    assert p.last_line(("b",)) == 8
    assert p.last_line(("e",)) == 9
    assert p.last_line(()) == 10
    assert p.last_line(("missing",)) == 0


def test_diagnostics_name_the_data_path_they_are_about() -> None:
    text = 'a:\n  - x\n  - b: {c: 1, c: 2}\n    ? [k]\n    : 3\n    d: {<<: 5}\n    e: ["\\x7f"]\n'
    loaded = load_yaml(SpecSource("m.yaml", text.encode()))
    paths = {d.code + ("-merge" if "merge" in d.message else ""): d.path for d in loaded.diagnostics}
    assert paths == {"E006": ("a", 1, "b", "c"), "E011": ("a", 1), "E005-merge": ("a", 1, "d"),
                     "E111": ("a", 1, "e")}


def _walked_from_the_root(p: Positions, path: tuple[str | int, ...]) -> tuple[int, int]:
    """The lookup without memoized prefixes: walk every part from the root."""
    from meshc.load.positions import _child, _mark

    position = p.root
    assert position is not None
    mark = _mark(position)
    for part in path:
        child = _child(position, part)
        if child is None:
            break
        position, mark = child, _mark(child)
    return mark.line + 1, mark.column + 1


def test_memoized_walks_give_the_spans_a_walk_from_the_root_gives() -> None:
    import random

    from bench.gen_mesh import generate

    p = positions(generate(40, seed=5))
    fresh = positions(generate(40, seed=5))
    rng = random.Random(5)
    parts: list[str | int] = ["spec", "services", "upstreams", "versions", "name", "timeout", "retries",
                              "attempts", "image", "missing", 0, 1, 2, 3, 39, 400]
    paths = [("spec", "services", rng.randrange(45), *rng.choices(parts, k=rng.randrange(5)))
             for _ in range(3000)]
    paths += [tuple(rng.choices(parts, k=rng.randrange(7))) for _ in range(1000)]
    for path in paths:   # asked in any order, twice: the memo answers as the walk does
        assert at(p.value(path)) == _walked_from_the_root(fresh, path), path
    for path in reversed(paths):
        assert at(p.value(path)) == _walked_from_the_root(fresh, path), path
