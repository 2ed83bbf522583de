"""The incremental check (meshc.incremental) against the full check, over many edits of generated
meshes and of every example: whenever it gives a result, that result is the full check's (every
diagnostic with its position, the IR with every span) and so are the bundle's files; whenever it
cannot prove that, it gives none. Workload edits must take the fast path."""

from __future__ import annotations

import dataclasses
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshc import compile_cache
from meshc.incremental import check_from, etcd_prefix_hint, layout
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, Checked, Compiled, build_bundle, check

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from gen_mesh import generate  # noqa: E402

EXAMPLES = sorted(ROOT.glob("examples/*/mesh.yaml"))
Edit = Callable[[str, random.Random], str | None]


def same(a: Any, b: Any, where: str = "") -> None:
    """a == b field by field, spans included (IR equality leaves spans out)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for field in dataclasses.fields(a):
            same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{index}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            same(a[key], b[key], f"{where}[{key!r}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def compare(base: Checked, text: str) -> Checked | None:
    """The incremental check of `text` from `base`, asserted equal to the full check when it is
    made; None when it is not made."""
    source = SpecSource(base.source.name, text.encode(), "r2")
    incremental = check_from(source, base)
    if incremental is not None:
        full = check(source)
        same(incremental.diagnostics, full.diagnostics, "diagnostics")
        same(incremental.mesh, full.mesh, "mesh")
        assert incremental.source == full.source
    return incremental


def base_of(name: str, text: str) -> Checked:
    checked = check(SpecSource(name, text.encode(), "r1"))
    assert checked.ok, checked.diagnostics
    return checked


# --- edits: each returns the edited text, or None where it does not apply ---------------------

def _service_matches(text: str, pattern: str) -> list[re.Match[str]]:
    spec = layout(text)
    assert spec is not None
    start, end = spec.segments[0][0], spec.segments[-1][1]
    return [m for m in re.finditer(pattern, text) if start <= m.start() < end]


def _replace_one(text: str, rng: random.Random, pattern: str, group: str,
                 change: Callable[[str], str]) -> str | None:
    matches = _service_matches(text, pattern)
    if not matches:
        return None
    match = rng.choice(matches)
    start, end = match.span(group)
    return text[:start] + change(match[group]) + text[end:]


def image(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"image: (?P<v>[\w./:-]+)", "v", lambda v: f"{v}-p{rng.randrange(100)}")


def replicas(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"replicas: (?P<v>\d+)", "v", lambda v: str(int(v) % 9 + 1))


def log_level(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"LOG_LEVEL: (?P<v>\w+)", "v", lambda v: "debug" if v != "debug" else "warn")


def comment_in_place(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"(?m)^(?P<v>    [a-z]\w*: .*)$", "v", lambda v: f"{v}  # reviewed")


def port(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"(?m)^    port: (?P<v>\d+)$", "v", lambda v: str(int(v) + 1))


def local_port(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"localPort: (?P<v>\d+)", "v", lambda v: str(int(v) + 1000))


def line_added(text: str, rng: random.Random) -> str | None:
    """A comment line added inside a service: every service below moves down a line."""
    return _replace_one(text, rng, r"(?m)^(?P<v>    [a-z]\w*: .*)$", "v", lambda v: f"    # added\n{v}")


def env_added(text: str, rng: random.Random) -> str | None:
    """A new variable: a workload change, but one more line."""
    return _replace_one(text, rng, r"(?m)^(?P<v>    env:)$", "v", lambda v: f"{v}\n      ADDED: 'yes'")


def grown_in_place(text: str, rng: random.Random) -> str | None:
    """A workload field added on a line of its own entry: more keys and values than before, which
    could take the file over the loader's MAX_NODES, so it is checked in full."""
    return _replace_one(text, rng, r"(?m)^(?P<v>    image: [\w./:-]+)$", "v", lambda v: f"{v}\n    command: [run]")


def grown_on_its_line(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"(?P<v>, replicas: \d+)", "v", lambda v: f"{v}, command: [run]")


def removed(text: str, rng: random.Random) -> str | None:
    spec = layout(text)
    assert spec is not None
    if len(spec.segments) < 2:
        return None
    start, end = rng.choice(spec.segments)
    return text[:start] + text[end:]


def renamed(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"(?m)^  - name: (?P<v>[\w-]+)$", "v", lambda v: f"{v}-x")


def added(text: str, rng: random.Random) -> str | None:
    spec = layout(text)
    assert spec is not None
    end = spec.segments[-1][1]
    return text[:end] + "  - name: added-one\n    image: example/added:1\n    port: 8080\n" + text[end:]


def reordered(text: str, rng: random.Random) -> str | None:
    spec = layout(text)
    assert spec is not None
    if len(spec.segments) < 2:
        return None
    index = rng.randrange(len(spec.segments) - 1)
    (a, b), (_, c) = spec.segments[index], spec.segments[index + 1]
    return text[:a] + text[b:c] + text[a:b] + text[c:]


def header(text: str, rng: random.Random) -> str | None:
    return re.sub(r"(?m)^(  namespace: )([\w-]+)$", r"\1\2-x", text, count=1) if "\n  namespace: " in text else None


def anchored(text: str, rng: random.Random) -> str | None:
    """An image given through an anchor the entry defines."""
    return _replace_one(text, rng, r"image: (?P<v>[\w./:-]+)", "v", lambda v: f"&img{rng.randrange(9)} {v}-a")


def broken(text: str, rng: random.Random) -> str | None:
    """An invalid replica count: the full check's error, exactly."""
    return _replace_one(text, rng, r"replicas: (?P<v>\d+)", "v", lambda v: "-3")


def empty_image(text: str, rng: random.Random) -> str | None:
    return _replace_one(text, rng, r"image: (?P<v>[\w./:-]+)", "v", lambda v: '""')


WORKLOAD: tuple[Edit, ...] = (image, replicas, log_level, comment_in_place)
OTHER: tuple[Edit, ...] = (port, local_port, line_added, env_added, grown_in_place, grown_on_its_line, removed, renamed, added, reordered, header,
                           anchored, broken, empty_image)


def meshes() -> list[tuple[str, str]]:
    generated = [(f"gen-{n}-{seed}", generate(n, seed=seed)) for n, seed in ((40, 1), (120, 2), (200, 3))]
    return generated + [(str(path.relative_to(ROOT)), path.read_text()) for path in EXAMPLES]


@pytest.mark.parametrize(("name", "text"), meshes(), ids=[name for name, _ in meshes()])
def test_the_incremental_check_is_the_full_check(name: str, text: str) -> None:
    base = base_of(name, text)
    rng = random.Random(name)
    fast = tried = 0
    for _ in range(12):
        for edit in WORKLOAD:
            edited = edit(text, rng)
            if edited is None:
                continue
            tried += 1
            fast += compare(base, edited) is not None
    for _ in range(4):
        for edit in OTHER:
            edited = edit(text, rng)
            if edited is not None:
                assert compare(base, edited) is None, f"{edit.__name__} took the fast path"
    assert tried > 0
    if name.startswith("gen-"):
        # entries defining an anchor (`&ejection`) are the only workload edits checked in full
        assert fast >= tried * 2 // 3, (fast, tried)
    else:
        assert fast > 0, f"no edit of {name} took the fast path ({tried} tried)"


@pytest.mark.parametrize("edit", [image, replicas, log_level], ids=lambda edit: edit.__name__)
def test_the_bundle_of_an_incremental_check_is_a_full_builds(edit: Edit) -> None:
    text = generate(80, seed=5)
    base = base_of("mesh.yaml", text)
    options = BuildOptions()
    kept = Compiled(base, build_bundle(base, options), options)
    rng = random.Random(edit.__name__)
    made = 0
    for _ in range(6):
        edited = edit(text, rng)
        assert edited is not None
        incremental = compare(base, edited)
        if incremental is None:
            continue
        made += 1
        full = check(incremental.source)
        expected = build_bundle(full, options)
        assert dict(build_bundle(incremental, options).files) == dict(expected.files)
        built = compile_cache.build_from(incremental, options, kept)
        assert built.bundle is not None and dict(built.bundle.files) == dict(expected.files)
    assert made > 0


def test_an_edit_that_breaks_the_service_reports_what_the_full_check_reports() -> None:
    text = generate(60, seed=7)
    base = base_of("mesh.yaml", text)
    for edit in (broken, empty_image):
        edited = edit(text, random.Random(1))
        assert edited is not None
        source = SpecSource("mesh.yaml", edited.encode(), "r2")
        assert check_from(source, base) is None
        full = check(source)
        assert not full.ok and any(d.is_error for d in full.diagnostics)


def test_the_same_text_is_the_base_check() -> None:
    text = generate(20, seed=3)
    base = base_of("mesh.yaml", text)
    again = check_from(SpecSource("mesh.yaml", text.encode(), "r2"), base)
    assert again is not None and again.mesh is base.mesh and again.source.revision == "r2"


@pytest.mark.parametrize(("name", "text"), meshes(), ids=[name for name, _ in meshes()])
def test_the_header_alone_gives_the_etcd_prefix(name: str, text: str) -> None:
    base = base_of(name, text)
    assert base.mesh is not None
    assert etcd_prefix_hint(base.source) == base.mesh.etcd_prefix
