"""`meshc build --repo R --rev X` equals a build of X's file, manifest.json's revision aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.git.history import History, meshc
from tests.support.gitrepo import GitRepo


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _without_revision(manifest: bytes) -> dict[str, object]:
    data = json.loads(manifest)
    data["source"]["revision"] = None
    return dict(data)


def _assert_same_build(at_rev: Path, of_file: Path, sha: str) -> None:
    from_git, from_file = _tree(at_rev), _tree(of_file)
    assert sorted(from_git) == sorted(from_file)
    for path, data in from_git.items():
        if path != "manifest.json":
            assert data == from_file[path], path
    assert json.loads(from_git["manifest.json"])["source"]["revision"] == sha
    assert json.loads(from_file["manifest.json"])["source"]["revision"] is None
    assert _without_revision(from_git["manifest.json"]) == _without_revision(from_file["manifest.json"])


@pytest.mark.parametrize("which", ["first", "second", "third", "feature"])
def test_build_at_revision_equals_build_of_that_file_with_dirty_work_tree(
        history: History, tmp_path: Path, which: str) -> None:
    repo = history.repo
    sha = getattr(history, which)
    # The work tree holds something else entirely: another valid spec, uncommitted.
    repo.dirty("mesh.yaml", repo.show(history.feature if which != "feature" else history.first, "mesh.yaml") + "\n")
    committed = tmp_path / "committed.yaml"
    committed.write_bytes(repo.repo.git.show(f"{sha}:mesh.yaml", strip_newline_in_stdout=False).encode())
    built = meshc("build", "--repo", str(repo.path), "--rev", sha[:12] if which == "first" else sha,
                  "mesh.yaml", "-o", str(tmp_path / "at-rev"))
    assert built.returncode == 0, built.stderr
    plain = meshc("build", str(committed), "-o", str(tmp_path / "of-file"))
    assert plain.returncode == 0, plain.stderr
    _assert_same_build(tmp_path / "at-rev", tmp_path / "of-file", sha)


def test_build_from_bare_repository_and_subdirectory_path(history: History, tmp_path: Path) -> None:
    bare = history.repo.clone_bare(tmp_path / "bare.git")
    committed = tmp_path / "committed.yaml"
    committed.write_bytes(bare.repo.git.show("main:deploy/mesh.yaml", strip_newline_in_stdout=False).encode())
    assert meshc("build", "--repo", str(bare.path), "--rev", "main", "deploy/mesh.yaml",
                 "-o", str(tmp_path / "a")).returncode == 0
    assert meshc("build", str(committed), "-o", str(tmp_path / "b")).returncode == 0
    _assert_same_build(tmp_path / "a", tmp_path / "b", history.third)


def test_build_at_invalid_revision_writes_nothing(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.commit_file("mesh.yaml", "apiVersion: meshc.dev/v1alpha1\nkind: Mesh\n", "incomplete")
    out = tmp_path / "out"
    result = meshc("build", "--repo", str(git_repo.path), "mesh.yaml", "-o", str(out))
    assert result.returncode == 1
    assert "mesh.yaml:" in result.stderr and "[E102]" in result.stderr
    assert not out.exists()
