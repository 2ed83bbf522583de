"""`meshc diff` checking its two revisions at once (meshc.review.forked): the same diff as one
process checking both, the same diagnostics for an invalid side, a failed or killed child
replaced by a check here, and never a child left behind."""

from __future__ import annotations

import copy
import os
import random
import signal
from collections.abc import Iterator

import pytest
import yaml

from bench.gen_mesh import generate
from meshc.pipeline import affected_services, changed_services, check
from meshc.resolve import ir
from meshc.review import digest as digests
from meshc.review import forked
from meshc.review.diff import MeshDiff, Side
from meshc.review.diff_format import render
from meshc.review.forked import Comparison, Pending
from tests.build.test_incremental import (
    BASES,
    EDITS,
    Spec,
    _source,
    edit_extra_caller,
    edit_mtls,
    edit_new_call,
    edit_remove_uncalled,
)
from tests.git.history import meshc
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def edited_pairs(name: str, text: str, count: int) -> Iterator[tuple[str, str]]:
    """(the spec, an edit of it) pairs: one or two random edits of the kinds a commit makes."""
    original: Spec = yaml.safe_load(text)
    rng = random.Random(f"forked-{name}")
    for _ in range(count):
        edited = copy.deepcopy(original)
        if [edit for edit in rng.sample(EDITS, rng.randint(1, 2)) if edit(edited, rng)]:
            yield text, yaml.safe_dump(edited, sort_keys=False)


def compared(old: Pending, new: Pending, jobs: int) -> tuple[Side, Side, MeshDiff | None, bool]:
    with Comparison(old, new, jobs) as comparison:
        result = comparison.run(lambda _: None)
    return (*result, comparison.checked_in_child)


def rendered(diff: MeshDiff | None) -> list[str]:
    assert diff is not None
    return [render(diff, fmt, color=False) for fmt in ("text", "json", "markdown")]


def what_can_differ(old: ir.Mesh, new: ir.Mesh) -> tuple[set[str] | None, frozenset[str] | None]:
    """(changed, affected) from digests, as the two processes of a diff compute them."""
    before, after = digests.digest(old), digests.digest(new)
    changed = digests.changed(before, after)
    assert before is not None and after is not None and changed is not None
    both = digests.in_both(before, after, changed)
    return changed, digests.affected(before, after, changed, digests.callee_digests(old, both),
                                     digests.callee_digests(new, both))


def assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(("name", "text"), BASES, ids=[name for name, _ in BASES])
def test_digests_name_the_services_the_pipeline_names(name: str, text: str) -> None:
    compared_pairs = 0
    for before, after in edited_pairs(name, text, 16):
        old, new = check(_source(before)).mesh, check(_source(after)).mesh
        if old is None or new is None:
            continue
        assert what_can_differ(old, new) == (changed_services(old, new), affected_services(old, new))
        compared_pairs += 1
    assert compared_pairs >= 8


@pytest.mark.parametrize(("name", "text"), BASES, ids=[name for name, _ in BASES])
def test_checking_the_sides_at_once_gives_the_serial_diff(name: str, text: str) -> None:
    seen_changes = 0
    for before, after in edited_pairs(name, text, 6):
        old, new = ("a", _source(before)), ("b", _source(after))
        serial = compared(old, new, jobs=1)
        concurrent = compared(old, new, jobs=2)
        assert not serial[3] and concurrent[3]    # the second one did check the old side in a child
        if serial[2] is None:   # the edit made the spec invalid: the same diagnostics either way
            assert concurrent[2] is None and concurrent[1].diagnostics == serial[1].diagnostics
            continue
        assert concurrent[2] is not None
        assert rendered(concurrent[2]) == rendered(serial[2])
        assert concurrent[0].diagnostics == serial[0].diagnostics
        seen_changes += serial[2].changed
    assert seen_changes >= 2


def test_permissions_granted_and_revoked_are_the_serial_ones() -> None:
    """The child sends the access view of the changed services only: what the others permit is
    the same on both sides. Calls added and removed, modes changed, callers from outside."""
    text = generate(60, seed=3)
    rng = random.Random("access")
    found = 0
    for _ in range(6):
        edited: Spec = yaml.safe_load(text)
        for edit in (edit_new_call, edit_mtls, edit_extra_caller, edit_remove_uncalled):
            edit(edited, rng)
        old, new = ("a", _source(text)), ("b", _source(yaml.safe_dump(edited, sort_keys=False)))
        serial, concurrent = compared(old, new, jobs=1), compared(old, new, jobs=2)
        assert serial[2] is not None and concurrent[2] is not None and concurrent[3]
        assert concurrent[2].access_changes == serial[2].access_changes
        assert rendered(concurrent[2]) == rendered(serial[2])
        found += len({change.action for change in serial[2].access_changes})
    assert found >= 8   # granted, revoked and mode changes were compared


def test_an_invalid_old_side_gives_its_diagnostics_from_the_child() -> None:
    text = generate(30, seed=5)
    broken = text.replace("  services:\n", "  services:\n  - name: ghost\n    port: 80\n    upstreams: [nowhere]\n", 1)
    serial = compared(("a", _source(broken)), ("b", _source(text)), jobs=1)
    concurrent = compared(("a", _source(broken)), ("b", _source(text)), jobs=2)
    assert concurrent[3] and serial[2] is None and concurrent[2] is None
    errors = [str(d) for d in concurrent[0].diagnostics if d.is_error]
    assert errors and errors == [str(d) for d in serial[0].diagnostics if d.is_error]
    assert not concurrent[0].valid and concurrent[1].valid


def test_a_child_killed_while_checking_is_replaced_by_a_check_here() -> None:
    text = generate(30, seed=5)
    old, new = ("a", _source(text)), ("b", _source(text.replace("replicas: 2", "replicas: 5", 1)))
    serial = compared(old, new, jobs=1)
    with Comparison(old, new, jobs=2) as comparison:
        assert comparison._child is not None
        pid = comparison._child.pid
        os.kill(pid, signal.SIGKILL)
        result = comparison.run(lambda _: None)
    assert_reaped(pid)
    assert not comparison.checked_in_child
    assert rendered(result[2]) == rendered(serial[2]) and serial[2] is not None and serial[2].changed


def test_a_child_that_fails_is_replaced_by_a_check_here(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    parent = os.getpid()
    real_build_side = forked.build_side

    def failing_in_the_child(label: str, source: forked.SpecSource) -> Side:
        if os.getpid() != parent:
            raise RuntimeError("a bug in checking")
        return real_build_side(label, source)

    monkeypatch.setattr(forked, "build_side", failing_in_the_child)
    monkeypatch.setenv("MESHC_DEBUG", "1")   # then the child's failure is shown, traceback included
    text = generate(30, seed=5)
    old, new = ("a", _source(text)), ("b", _source(text.replace("replicas: 2", "replicas: 5", 1)))
    with Comparison(old, new, jobs=2) as comparison:
        assert comparison._child is not None
        pid = comparison._child.pid
        result = comparison.run(lambda _: None)
    assert_reaped(pid)
    assert not comparison.checked_in_child
    shown = capsys.readouterr().err
    assert "checking a in a child process failed" in shown and "RuntimeError: a bug in checking" in shown
    monkeypatch.undo()
    assert rendered(result[2]) == rendered(compared(old, new, jobs=1)[2])


def test_no_child_is_left_when_the_comparison_is_left_early() -> None:
    text = generate(30, seed=5)
    old, new = ("a", _source(text)), ("b", _source(text.replace("replicas: 2", "replicas: 5", 1)))
    with pytest.raises(KeyboardInterrupt), Comparison(old, new, jobs=2) as comparison:
        assert comparison._child is not None
        pid = comparison._child.pid
        raise KeyboardInterrupt
    assert_reaped(pid)
    with Comparison(old, new, jobs=2) as comparison:
        assert comparison._child is not None
        pid = comparison._child.pid
        comparison.run(lambda _: None)
    assert_reaped(pid)


def test_one_check_serves_two_revisions_of_the_same_spec() -> None:
    text = generate(30, seed=5)
    with Comparison(("a", _source(text)), ("b", _source(text)), jobs=2) as comparison:
        assert comparison._child is None   # nothing to check at once
        old, new, diff = comparison.run(lambda _: None)
    assert diff is not None and not diff.changed
    assert (old.label, new.label) == ("a", "b") and old.diagnostics == new.diagnostics


def test_the_command_prints_the_same_with_one_process_or_two(git_repo: GitRepo) -> None:
    text = generate(40, seed=7)
    a = git_repo.commit_file("mesh.yaml", text, "base")
    b = git_repo.commit_file("mesh.yaml", text.replace("replicas: 2", "replicas: 4", 1)
                             .replace("  services:\n", "  # a comment moves every line\n  services:\n", 1), "edit")
    broken = git_repo.commit_file("mesh.yaml", text.replace("port: ", "port: x", 1), "broken")
    # and against the work tree (the spec as edited): HEAD is `broken`, the file holds b's spec
    (git_repo.path / "mesh.yaml").write_text(git_repo.show(b, "mesh.yaml"))
    for revs in ((a, b), (b, broken), (broken, a), (a,), (broken,)):
        outputs = [meshc("diff", "--repo", str(git_repo.path), *revs, "-j", jobs, "--format", fmt)
                   for jobs in ("1", "2") for fmt in ("text", "json")]
        serial, concurrent = outputs[:2], outputs[2:]
        assert [(r.returncode, r.stdout, r.stderr) for r in serial] == \
            [(r.returncode, r.stdout, r.stderr) for r in concurrent]
        assert all("Traceback" not in r.stderr for r in outputs)
    assert meshc("diff", "--repo", str(git_repo.path), a, b).returncode == 3
    assert meshc("diff", "--repo", str(git_repo.path), b, broken).returncode == 1
    assert meshc("diff", "--repo", str(git_repo.path), a, "-j", "2").returncode == 3      # the work tree is b
    assert meshc("diff", "--repo", str(git_repo.path), b, "-j", "2").returncode == 0
