"""Reading mesh.yaml at a Git revision: the object database only, never the work tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from meshc.diagnostics import MeshcError
from meshc.load.git import GitSpecReader, SpecNotInRevision, read_spec_at_revision
from tests.git.history import SHOP, History, meshc
from tests.support.gitrepo import GitRepo


def git_show(repo: GitRepo, rev: str, path: str) -> bytes:
    """The committed bytes as the git command prints them (gitpython's `show` strips the last newline)."""
    return subprocess.run(["git", "-C", str(repo.path), "show", f"{rev}:{path}"], capture_output=True,
                          check=True).stdout


def _error(excinfo: pytest.ExceptionInfo[MeshcError]) -> str:
    return excinfo.value.diagnostics[0].message


def test_each_revision_gives_its_own_bytes_and_full_sha(history: History) -> None:
    repo = history.repo
    for rev, sha in (("HEAD", history.third), ("main~1", history.second), (history.first[:10], history.first),
                     ("feature", history.feature)):
        source = read_spec_at_revision(str(repo.path), rev, "mesh.yaml")
        assert source.revision == sha and len(source.revision) == 40
        assert source.data == git_show(repo, sha, "mesh.yaml")
        assert source.name == "mesh.yaml"


def test_dirty_work_tree_and_index_do_not_leak_in(history: History) -> None:
    repo = history.repo
    repo.dirty("mesh.yaml", "this: is not committed\n")
    repo.repo.git.add("mesh.yaml")            # staged, still not committed
    repo.dirty("mesh.yaml", "nor: this\n")     # and modified again on top
    before = repo.repo.git.status("--porcelain")
    source = read_spec_at_revision(str(repo.path), "HEAD", "mesh.yaml")
    assert source.data == git_show(repo, "HEAD", "mesh.yaml")
    assert repo.repo.git.status("--porcelain") == before
    assert (repo.path / "mesh.yaml").read_text() == "nor: this\n"


def test_other_branch_is_read_without_checking_it_out(history: History) -> None:
    repo = history.repo
    assert repo.active_branch == "main"
    source = read_spec_at_revision(str(repo.path), "feature", "mesh.yaml")
    assert b"attempts: 1, perTryTimeout: 500ms" in source.data
    assert repo.active_branch == "main"
    assert b"attempts: 1," not in (repo.path / "mesh.yaml").read_bytes()


def test_bare_clone_and_tags(history: History, tmp_path: Path) -> None:
    git = history.repo.repo.git
    with git.custom_environment(GIT_COMMITTER_NAME="tests", GIT_COMMITTER_EMAIL="tests@meshc.invalid"):
        git.tag("-a", "v1", history.first, "-m", "an annotated tag")
    bare = history.repo.clone_bare(tmp_path / "bare.git")
    assert bare.repo.bare
    source = read_spec_at_revision(str(bare.path), "v1", "mesh.yaml")
    assert source.revision == history.first and source.data.decode() == SHOP
    assert read_spec_at_revision(str(bare.path), "main", "deploy/mesh.yaml").revision == history.third


def test_paths_are_normalized_relative_to_the_root(history: History) -> None:
    root = history.repo.path
    for spelled in ("deploy/mesh.yaml", "./deploy/../deploy/mesh.yaml", str(root / "deploy" / "mesh.yaml")):
        assert read_spec_at_revision(str(root), "HEAD", spelled).name == "deploy/mesh.yaml"


def test_symlink_inside_the_tree_is_followed(git_repo: GitRepo) -> None:
    git_repo.commit_file("specs/shop.yaml", SHOP, "spec")
    os.symlink("specs/shop.yaml", git_repo.path / "mesh.yaml")
    git_repo.repo.git.add("mesh.yaml")
    git_repo.commit_files({}, "link", allow_empty=True)
    assert read_spec_at_revision(str(git_repo.path), "HEAD", "mesh.yaml").data.decode() == SHOP


@pytest.mark.parametrize(("rev", "path", "expected"), [
    ("no-such-branch", "mesh.yaml", "unknown revision 'no-such-branch'"),
    ("HEAD~10", "mesh.yaml", "unknown revision 'HEAD~10'"),
    ("HEAD^{tree}", "mesh.yaml", "names a tree, not a commit"),
    ("HEAD", "missing.yaml", "missing.yaml: no such file at HEAD"),
    ("HEAD", "deploy", "deploy: is a directory"),
    ("HEAD", "../outside.yaml", "is outside the repository"),
    ("HEAD", "/etc/hostname", "is outside the repository"),
    ("HEAD", ".", "names the repository root"),
])
def test_clear_errors_exit_two(history: History, rev: str, path: str, expected: str) -> None:
    with pytest.raises(MeshcError) as excinfo:
        read_spec_at_revision(str(history.repo.path), rev, path)
    assert expected in _error(excinfo)
    assert excinfo.value.exit_code == 2


def test_missing_path_is_distinguishable(history: History) -> None:
    with GitSpecReader(str(history.repo.path)) as reader, pytest.raises(SpecNotInRevision):
        reader.read("HEAD", "nope.yaml")


def test_not_a_repository_and_empty_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(MeshcError) as excinfo:
        read_spec_at_revision(str(plain), "HEAD", "mesh.yaml")
    assert "is not a Git repository" in _error(excinfo) and excinfo.value.exit_code == 2
    with pytest.raises(MeshcError) as excinfo:
        read_spec_at_revision(str(tmp_path / "absent"), "HEAD", "mesh.yaml")
    assert "no such directory" in _error(excinfo)
    GitRepo.init(tmp_path / "empty")
    with pytest.raises(MeshcError) as excinfo:
        read_spec_at_revision(str(tmp_path / "empty"), "HEAD", "mesh.yaml")
    assert "no commits yet" in _error(excinfo)


def test_cli_reports_git_errors_without_traceback(history: History) -> None:
    result = meshc("validate", "--repo", str(history.repo.path), "--rev", "nope", "mesh.yaml")
    assert result.returncode == 2
    assert "unknown revision 'nope'" in result.stderr and "Traceback" not in result.stderr
    result = meshc("validate", "--rev", "HEAD", "mesh.yaml")
    assert result.returncode == 2 and "--rev needs --repo" in result.stderr


def test_validate_at_revision_positions_name_the_repo_path(git_repo: GitRepo) -> None:
    git_repo.commit_file("deploy/mesh.yaml", SHOP.replace("weight: 10}", "weight: 20}"), "broken weights")
    result = meshc("validate", "--repo", str(git_repo.path), "--rev", "HEAD", "deploy/mesh.yaml")
    assert result.returncode == 1
    lines = SHOP.splitlines()
    versions = lines.index("    versions:", lines.index("  - name: catalog")) + 1   # where E206 points
    assert f"deploy/mesh.yaml:{versions}:5: error: version weights of 'catalog' sum to 110, not 100 [E206]" \
        in result.stderr


def _remove_object(repo: GitRepo, sha: str) -> None:
    """Damage the repository as a broken clone or an interrupted fetch would: one loose object gone."""
    (repo.path / ".git" / "objects" / sha[:2] / sha[2:]).unlink()


@pytest.mark.parametrize("missing", ["blob", "tree"])
def test_a_missing_object_is_a_clear_error_not_a_crash(git_repo: GitRepo, tmp_path: Path, missing: str) -> None:
    git_repo.commit_file("mesh.yaml", SHOP, "spec")
    name = "HEAD:mesh.yaml" if missing == "blob" else "HEAD^{tree}"
    sha = git_repo.repo.git.rev_parse(name)
    _remove_object(git_repo, sha)
    with pytest.raises(MeshcError) as excinfo:
        read_spec_at_revision(str(git_repo.path), "HEAD", "mesh.yaml")
    assert f"is damaged: object {sha}, needed to read HEAD, is missing" in _error(excinfo)
    assert excinfo.value.exit_code == 2
    for args in (("build", "--repo", str(git_repo.path), "--rev", "HEAD", "-o", str(tmp_path / "out")),
                 ("diff", "--repo", str(git_repo.path), "HEAD", "HEAD")):
        result = meshc(*args)
        assert result.returncode == 2, result.stderr
        assert f"object {sha}" in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "out").exists()
