"""`meshc diff` checking the new revision incrementally from the old one (`diff.side_from`,
`forked.Comparison`): over many random edits of generated meshes and of every example, in both
directions, the diff is the one of both revisions checked in full, rendered in every format, with
the same diagnostics; the command prints the same and exits the same; and a commit changing one
image does take the incremental path."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

from bench.gen_mesh import generate
from meshc import compile_cache
from meshc.cli import main
from meshc.incremental import edit_between
from meshc.load import SpecSource
from meshc.pipeline import Checked
from meshc.review import forked, spec_view
from meshc.review.diff import MeshDiff, Side, build_side, compare_values, kept_side, locate
from meshc.review.diff_format import render
from meshc.review.forked import Comparison, Pending
from tests.support.gitrepo import GitRepo
from tests.validate.test_incremental import OTHER, WORKLOAD, Edit, broken, image, port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(ROOT.glob("examples/*/mesh.yaml"))
FORMATS = ("text", "json", "markdown")


def meshes() -> list[tuple[str, str]]:
    generated = [(f"gen-{n}-{seed}", generate(n, seed=seed)) for n, seed in ((30, 11), (60, 12))]
    return generated + [(str(path.relative_to(ROOT)), path.read_text()) for path in EXAMPLES]


def source(text: str, revision: str) -> SpecSource:
    return SpecSource("mesh.yaml", text.encode(), revision)


def compared(old: Pending, new: Pending, *, jobs: int = 1,
             incremental: bool = True) -> tuple[Side, Side, MeshDiff | None, Comparison]:
    with Comparison(old, new, jobs, incremental=incremental) as comparison:
        result = comparison.run(lambda _: None)
    return (*result, comparison)


def rendered(diff: MeshDiff | None) -> list[str] | None:
    return None if diff is None else [render(diff, fmt, color=False) for fmt in FORMATS]


def assert_same_diff(before: str, after: str) -> bool:
    """The diff of `before` -> `after` with the new side checked incrementally (when it can be)
    is the diff with both checked in full; whether it was checked incrementally."""
    old, new = ("a", source(before, "r1")), ("b", source(after, "r2"))
    full = compared(old, new, incremental=False)
    fast = compared(old, new)
    assert not full[3].checked_incrementally
    assert [d for d in fast[0].diagnostics] == [d for d in full[0].diagnostics]
    assert [d for d in fast[1].diagnostics] == [d for d in full[1].diagnostics]
    assert (fast[0].valid, fast[1].valid) == (full[0].valid, full[1].valid)
    assert rendered(fast[2]) == rendered(full[2])
    if full[2] is not None:
        assert fast[2] is not None and fast[2].changed == full[2].changed
        assert fast[2].spec_changes == full[2].spec_changes   # values and positions in both revisions
    return fast[3].checked_incrementally


def edits(text: str, rng: random.Random, kinds: tuple[Edit, ...], rounds: int) -> Iterator[tuple[str, str]]:
    for _ in range(rounds):
        for edit in kinds:
            edited = edit(text, rng)
            if edited is not None:
                yield edit.__name__, edited


@pytest.mark.parametrize(("name", "text"), meshes(), ids=[name for name, _ in meshes()])
def test_the_incremental_diff_is_the_full_diff(name: str, text: str) -> None:
    rng = random.Random(f"diff-{name}")
    fast = tried = 0
    # examples are small, and some of their services cannot be checked incrementally (a warning
    # in them or in a callee, a caller named by a route): more rounds find the others
    for _kind, edited in edits(text, rng, WORKLOAD, 3 if name.startswith("gen-") else 8):
        tried += 1
        fast += assert_same_diff(text, edited)
        assert_same_diff(edited, text)   # and back
    # several services edited in one commit
    for _ in range(3):
        edited = text
        for edit in rng.sample(WORKLOAD, 3):
            edited = edit(edited, rng) or edited
        if edited != text:
            assert_same_diff(text, edited)
    for kind, edited in edits(text, rng, OTHER, 1):
        assert not assert_same_diff(text, edited), f"{kind} was checked incrementally"
        assert_same_diff(edited, text)   # undone: some (a field removed) may be checked incrementally
    assert tried > 0 and fast > 0, f"no edit of {name} was checked incrementally ({tried} tried)"


def test_an_invalid_side_gives_the_full_checks_diagnostics() -> None:
    text = generate(40, seed=13)
    edited = broken(text, random.Random(3))
    assert edited is not None
    for before, after in ((text, edited), (edited, text)):
        old, new = ("a", source(before, "r1")), ("b", source(after, "r2"))
        full, fast = compared(old, new, incremental=False), compared(old, new)
        assert fast[2] is None and full[2] is None and not fast[3].checked_incrementally
        assert (fast[0].diagnostics, fast[1].diagnostics) == (full[0].diagnostics, full[1].diagnostics)
        assert any(d.is_error for d in fast[0].diagnostics + fast[1].diagnostics)


def test_a_one_image_commit_is_checked_incrementally_in_one_process() -> None:
    """The fast path: a commit that changes one image (what bench/diff.py measures) is checked
    from the old revision, without a child, whatever the number of jobs."""
    text = generate(200, seed=14)
    edited = image(text, random.Random(5))
    assert edited is not None
    for jobs in (1, 2):
        with Comparison(("a", source(text, "r1")), ("b", source(edited, "r2")), jobs) as comparison:
            assert comparison._child is None
            _, new, diff = comparison.run(lambda _: None)
        assert comparison.checked_incrementally and not comparison.checked_in_child
        assert diff is not None and diff.changed and new.locator is not None
        assert [(c.field, c.new_span is not None) for c in diff.spec_changes] == [("image", True)]


def test_an_edit_callers_see_is_checked_at_once_in_two_processes() -> None:
    """A port changed in place keeps every line where it was, but callers see it: the texts say
    so (`edit_between`) before anything is checked, so the two sides are checked at once."""
    text = generate(60, seed=16)
    edited = port(text, random.Random(2))
    assert edited is not None
    old, new = ("a", source(text, "r1")), ("b", source(edited, "r2"))
    with Comparison(old, new, jobs=2) as comparison:
        assert comparison._child is not None
        _, _, diff = comparison.run(lambda _: None)
    assert comparison.checked_in_child and not comparison.checked_incrementally
    assert rendered(diff) == rendered(compared(old, new, incremental=False)[2])


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "meshc-cache"
    monkeypatch.setenv("MESHC_CACHE_DIR", str(directory))
    return directory


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_and_exits_as_the_full_diff(git_repo: GitRepo, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """The whole command in this process, with the new side checked incrementally (the old one
    checked here, then kept by the first run), then both in full: the same stdout, stderr and exit
    code, for changed, invalid and unchanged revisions."""
    text = generate(60, seed=15)
    scaled = "ads-store-api:2.2.0\n    replicas: 3\n"
    assert text.count("ads-store-api:2.2.0") == 1 and text.count(scaled) == 1
    one_image = text.replace("ads-store-api:2.2.0", "ads-store-api:2.2.1")
    scaled = scaled.replace("2.2.0", "2.2.1")
    a = git_repo.commit_file("mesh.yaml", text, "base")
    b = git_repo.commit_file("mesh.yaml", one_image, "one image")
    c = git_repo.commit_file("mesh.yaml", one_image.replace(scaled, scaled.replace("3", "-3")), "broken")
    d = git_repo.commit_file("mesh.yaml", one_image.replace(scaled, scaled.replace("3", "5")), "scaled")
    taken: list[bool] = []
    real_side_from = forked.side_from

    def side_from(*args: Any, **kwargs: Any) -> Side | None:
        side = real_side_from(*args, **kwargs)
        taken.append(side is not None)
        return side

    monkeypatch.setattr(forked, "side_from", side_from)
    cases = {(a, b): {True}, (b, a): {True}, (a, d): {True}, (b, c): {False}, (c, b): {False}, (a, a): set()}
    fast = {}
    for run in ("cold", "warm"):
        for revs, expected in cases.items():
            taken.clear()
            for fmt in FORMATS:
                result = run_main(["diff", "--repo", str(git_repo.path), *revs, "--format", fmt], capsys)
                assert fast.setdefault((revs, fmt), result) == result, (run, revs, fmt)
                compile_cache.settle()
            assert set(taken) == expected, revs   # checked incrementally where it can be, and tried at all
    assert len(list(cache_dir.glob("checked-*.pickle"))) == 2    # of a and b, the valid old revisions

    class Full(Comparison):
        def __init__(self, old: Pending, new: Pending, jobs: int = 1, incremental: bool = True,
                     kept: bool = False) -> None:
            super().__init__(old, new, jobs, incremental=False)

    monkeypatch.setattr(forked, "Comparison", Full)
    for (revs, fmt), result in fast.items():
        assert result == run_main(["diff", "--repo", str(git_repo.path), *revs, "-j", "1", "--format", fmt], capsys)
    assert [fast[(revs, "text")][0] for revs in cases] == [3, 3, 3, 1, 1, 0]
    assert "replicas" in fast[((b, c), "text")][2] and "ads-store-api:2.2.1" in fast[((a, b), "markdown")][1]


# --- the old revision's check kept by an earlier diff (compile_cache.load_checked) -----------

def kept_diff(old: Pending, new: Pending) -> tuple[Side, Side, MeshDiff | None, Comparison]:
    with Comparison(old, new, 1, kept=True) as comparison:
        result = comparison.run(lambda _: None)
    comparison.keep()
    compile_cache.settle()
    return (*result, comparison)


def test_a_kept_old_check_gives_the_full_diff(cache_dir: Path) -> None:
    text = generate(80, seed=17)
    rng = random.Random("kept")
    old = ("a", source(text, "r1"))
    first = kept_diff(old, ("b", source(image(text, rng) or "", "r2")))
    assert not first[3].old_was_kept and list(cache_dir.glob("checked-*.pickle"))
    warm = 0
    for kind, edited in [*edits(text, rng, WORKLOAD, 2), ("broken", broken(text, rng) or ""),
                         *edits(text, rng, OTHER, 1)]:
        new = ("b", source(edited, "r2"))
        full = compared(old, new, incremental=False)
        fast = kept_diff(old, new)
        warm += fast[3].old_was_kept
        assert rendered(fast[2]) == rendered(full[2]), kind
        assert (fast[0].diagnostics, fast[1].diagnostics) == (full[0].diagnostics, full[1].diagnostics)
    assert warm >= 8


def test_a_kept_side_locates_every_field_where_the_loaded_side_does(cache_dir: Path) -> None:
    """Fields of the changed services from the old text's entries of them, any other from the
    whole text: the spans of a side whose document was loaded."""
    text = generate(40, seed=18)
    edited = image(text, random.Random(4))
    assert edited is not None
    old_source, new_source = source(text, "r1"), source(edited, "r2")
    loaded = build_side("a", old_source)
    assert loaded.mesh is not None
    kept = kept_side("a", old_source, Checked(old_source, loaded.diagnostics, loaded.mesh),
                     edit_between(old_source, new_source))
    subjects = list(spec_view.subjects(loaded.mesh).values())
    fields = [(subject, name) for subject in subjects for name, _, _ in compare_values(subject.values, {})]
    assert len(fields) > 500
    assert locate(kept, fields) == locate(loaded, fields)


def test_a_damaged_kept_check_is_checked_again(cache_dir: Path) -> None:
    text = generate(30, seed=19)
    old, new = ("a", source(text, "r1")), ("b", source(image(text, random.Random(6)) or "", "r2"))
    expected = rendered(compared(old, new, incremental=False)[2])
    kept_diff(old, new)
    (entry,) = cache_dir.glob("checked-*.pickle")
    entry.write_bytes(entry.read_bytes()[:100])
    again = kept_diff(old, new)
    assert not again[3].old_was_kept and rendered(again[2]) == expected
    warm = kept_diff(old, new)   # written again by the run that found it damaged
    assert warm[3].old_was_kept and rendered(warm[2]) == expected
