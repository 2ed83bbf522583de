"""The positioned loader: data as YAML means it, exact positions, bounded work on hostile input."""

from __future__ import annotations


import pytest

from meshc.load import SpecSource, load_yaml, yaml_loader
from meshc.load.source import MAX_SPEC_BYTES


def load(text: str | bytes) -> tuple[object, list[str], object]:
    data = text.encode() if isinstance(text, str) else text
    loaded = load_yaml(SpecSource("m.yaml", data))
    return loaded.data, [f"{d.span.line}:{d.span.col} {d.code}" for d in loaded.diagnostics if d.span], loaded.positions


def test_positions_of_keys_and_values_are_one_based() -> None:
    _, diags, positions = load("a:\n  b: [1, 2]\n  c: {d: x}\n")
    assert diags == []
    assert positions.key(("a", "b")).line == 2 and positions.key(("a", "b")).col == 3  # type: ignore[attr-defined]
    assert (positions.value(("a", "b", 1)).line, positions.value(("a", "b", 1)).col) == (2, 10)  # type: ignore[attr-defined]
    assert (positions.value(("a", "c", "d")).line, positions.value(("a", "c", "d")).col) == (3, 10)  # type: ignore[attr-defined]


def test_columns_count_characters_not_bytes() -> None:
    _, _, positions = load("é: {x: 1, y: ü, z: 3}\n")
    assert positions.value(("é", "z")).col == 20  # type: ignore[attr-defined]


def test_yaml_1_2_core_scalars() -> None:
    data, _, _ = load("a: off\nb: yes\nc: 'on'\nd: 0o17\ne: 0x1F\nf: 1.5\ng: ~\nh: true\ni: 2001-12-14\nj: '80'\nk: !!str 80\n")
    assert data == {"a": "off", "b": "yes", "c": "on", "d": 15, "e": 31, "f": 1.5, "g": None, "h": True,
                    "i": "2001-12-14", "j": "80", "k": "80"}


def test_anchors_aliases_and_merge_keys_keep_positions() -> None:
    text = "base: &b\n  x: 1\n  y: 2\nsvc:\n  <<: *b\n  y: 3\nlist:\n- *b\n"
    data, diags, positions = load(text)
    assert diags == []
    assert data == {"base": {"x": 1, "y": 2}, "svc": {"x": 1, "y": 3}, "list": [{"x": 1, "y": 2}]}
    assert positions.value(("svc", "y")).line == 6  # type: ignore[attr-defined]
    assert positions.value(("svc", "x")).line == 2  # merged from the anchor: where it is written
    assert positions.value(("list", 0, "y")).line == 3  # type: ignore[attr-defined]


def test_merge_of_several_mappings_earlier_wins() -> None:
    data, diags, _ = load("a: &a {k: 1, m: 1}\nb: &b {k: 2, n: 2}\nc:\n  <<: [*a, *b]\n  z: 0\n")
    assert diags == []
    assert data["c"] == {"z": 0, "k": 1, "m": 1, "n": 2}  # type: ignore[index]


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    _, diags, _ = load("a: 1\nb: 2\na: 3\n")
    assert diags == ["3:1 E006"]


@pytest.mark.parametrize(("text", "expected"), [
    (b"", "1:1 E003"),
    (b"# a comment\n", "1:1 E003"),
    (b"a:\n\tb: 1\n", "2:1 E004"),
    (b"a: [1, 2\n", "2:1 E005"),
    # A file cut off without a final line break: the end of its last line, not a line past it.
    (b"a: [1, 2", "1:9 E005"),
    (b"a: 1\nb: {c: 'x", "2:10 E005"),
    (b"a: 1\nb: {c: d", "2:9 E005"),
    (b"a: 1\rb: [", "2:5 E005"),   # a lone CR ends a line for libyaml, and so here
    (b"a: 1\n---\nb: 2\n", "2:1 E010"),
    (b"a: \xff\n", "1:4 E002"),
    (b"\xfe\xff\x00a", "1:1 E002"),
    (b"a: \x00\n", "1:4 E002"),
    (b"a: *nowhere\n", "1:4 E008"),
    (b"a: &x [*x]\n", "1:8 E008"),
    (b"a: !custom x\n", "1:4 E012"),
])
def test_bad_input_is_a_positioned_diagnostic(text: bytes, expected: str) -> None:
    data, diags, _ = load(text)
    assert data is None
    assert expected in diags


def test_collection_keys_are_reported_and_skipped() -> None:
    data, diags, _ = load("? {a: 1}\n: 2\nb: 3\n")
    assert diags == ["1:3 E011"]
    assert data == {"b": 3}


def test_bom_is_ignored_with_a_warning() -> None:
    data, diags, _ = load(b"\xef\xbb\xbfa: 1\n")
    assert data == {"a": 1}
    assert diags == ["1:1 W001"]


def test_deep_nesting_is_refused_not_a_crash() -> None:
    data, diags, _ = load("a: " + "[" * 200_000 + "]" * 200_000)
    assert data is None and diags and diags[0].endswith("E008")


BOMB = "\n".join(["l0: &l0 [" + ",".join(["x"] * 10) + "]"]
                 + [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]) + "\n"


def test_alias_bomb_is_bounded() -> None:
    data, diags, _ = load(BOMB)     # a billion nodes: it stops after MAX_NODES
    assert data is None and any(d.endswith("E008") for d in diags)


@pytest.mark.parametrize("padding_lines", [0, 1_000, 100_000])
def test_the_node_budget_does_not_grow_with_padding(padding_lines: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Comments cost libyaml a scan and nothing else: the bomb stops after the same number of nodes."""
    monkeypatch.setattr(yaml_loader, "MAX_NODES", 5_000)
    padding = "# " + "x" * 70 + "\n"
    data, diags, _ = load(padding * padding_lines + BOMB)
    assert data is None
    (diag,) = diags
    # the alias expansion that crosses 5,000 nodes: always the same one, wherever the bomb starts
    assert diag == f"{padding_lines + 4}:22 E008"


def test_a_file_of_more_nodes_than_the_budget_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_loader, "MAX_NODES", 1_000)
    data, diags, _ = load("a: [" + "1," * 600 + "1]\n")
    assert data == {"a": [1] * 601} and diags == []
    data, diags, _ = load("a: {" + ", ".join(f"k{i}: 1" for i in range(600)) + "}\n")   # keys count too
    assert data is None and diags and diags[0].endswith("E013")


def test_oversized_input_is_refused_before_parsing() -> None:
    data, diags, _ = load(b"a" * (MAX_SPEC_BYTES + 1))
    assert data is None and diags == ["1:1 E009"]
