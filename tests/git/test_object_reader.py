"""Reading a spec that is there without gitpython (meshc.load.git._ObjectReader, one `git
cat-file --batch`): the same bytes and shas as gitpython gives, and gitpython only for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshc.diagnostics import MeshcError
from meshc.load.git import GitSpecReader, _blob_data, _ObjectReader
from tests.git.history import ROOT, SHOP, History
from tests.support.gitrepo import GitRepo

READS_WITHOUT_GITPYTHON = """
import json, sys
from meshc.load.git import GitSpecReader
with GitSpecReader(sys.argv[1]) as reader:
    head = reader.read("HEAD", "mesh.yaml")
    first = reader.read(reader.parents("HEAD")[0], "deploy/mesh.yaml")
    print(json.dumps({"head": head.revision, "resolved": reader.resolve("main"), "first": first.revision,
                      "bytes": [len(head.data), len(first.data)], "gitpython": "git" in sys.modules}))
"""


def git_show(repo: GitRepo, rev: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo.path), "show", f"{rev}:{path}"], capture_output=True,
                          check=True).stdout


def test_reading_specs_and_parents_imports_no_gitpython(history: History) -> None:
    result = subprocess.run([sys.executable, "-c", READS_WITHOUT_GITPYTHON, str(history.repo.path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["gitpython"] is False
    assert answer["head"] == answer["resolved"] == history.third
    assert answer["bytes"] == [len(git_show(history.repo, "HEAD", "mesh.yaml")),
                               len(git_show(history.repo, "HEAD~1", "deploy/mesh.yaml"))]


@pytest.mark.parametrize("rev", ["HEAD", "main~1", "feature", "HEAD^", "main@{0}"])
@pytest.mark.parametrize("path", ["mesh.yaml", "deploy/mesh.yaml"])
def test_the_object_reader_and_gitpython_agree(history: History, rev: str, path: str) -> None:
    objects = _ObjectReader.open(str(history.repo.path))
    assert objects is not None
    try:
        commit = objects.commit(rev)
        assert commit is not None
        blob = objects.file(commit, path, rev)
    finally:
        objects.close()
    expected = history.repo.repo.commit(rev)
    assert commit.sha == expected.hexsha and commit.tree == expected.tree.hexsha
    assert commit.parents == [parent.hexsha for parent in expected.parents]
    assert blob == _blob_data(expected, path, rev) == git_show(history.repo, rev, path)


def test_a_short_sha_a_tag_and_a_bare_clone(history: History, tmp_path: Path) -> None:
    git = history.repo.repo.git
    with git.custom_environment(GIT_COMMITTER_NAME="tests", GIT_COMMITTER_EMAIL="tests@meshc.invalid"):
        git.tag("-a", "v1", history.first, "-m", "an annotated tag")
    bare = history.repo.clone_bare(tmp_path / "bare.git")
    objects = _ObjectReader.open(str(bare.path))
    assert objects is not None
    try:
        for rev in ("v1", history.first[:9]):
            commit = objects.commit(rev)
            assert commit is not None and commit.sha == history.first
            assert objects.file(commit, "mesh.yaml", rev) == SHOP.encode()
    finally:
        objects.close()


def test_links_executables_and_what_is_left_to_gitpython(git_repo: GitRepo) -> None:
    git_repo.commit_files({"specs/shop.yaml": SHOP, "specs/run.yaml": SHOP}, "specs")
    os.symlink("specs/shop.yaml", git_repo.path / "mesh.yaml")
    os.symlink("../specs", git_repo.path / "linked")
    os.chmod(git_repo.path / "specs" / "run.yaml", 0o755)
    git_repo.repo.git.add("mesh.yaml", "linked", "specs/run.yaml")
    git_repo.commit_files({}, "link", allow_empty=True)
    objects = _ObjectReader.open(str(git_repo.path))
    assert objects is not None
    try:
        head = objects.commit("HEAD")
        assert head is not None
        assert objects.file(head, "mesh.yaml", "HEAD") == SHOP.encode()          # a link, followed
        assert objects.file(head, "specs/run.yaml", "HEAD") == SHOP.encode()     # mode 100755
        # gitpython's answers make the messages: no such file, a directory, a name for nothing
        assert objects.file(head, "nope.yaml", "HEAD") is None
        assert objects.file(head, "specs", "HEAD") is None
        assert objects.commit("no-such-branch") is None and objects.commit("HEAD^{tree}") is None
    finally:
        objects.close()
    with GitSpecReader(str(git_repo.path)) as reader, pytest.raises(MeshcError, match="is a directory"):
        reader.read("HEAD", "specs")


def test_only_the_repository_itself_is_read_fast(history: History, tmp_path: Path) -> None:
    """`--repo DIR` names the repository: a directory inside one, or none at all, is gitpython's to refuse."""
    assert _ObjectReader.open(str(history.repo.path / "deploy")) is None
    assert _ObjectReader.open(str(tmp_path / "absent")) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert _ObjectReader.open(str(plain)) is None
    with pytest.raises(MeshcError, match="is not a Git repository"):
        GitSpecReader(str(history.repo.path / "deploy"))


def test_a_spec_over_the_size_limit_is_refused_and_the_reader_reads_on(git_repo: GitRepo) -> None:
    from meshc.load.source import MAX_SPEC_BYTES

    git_repo.commit_files({"big.yaml": "#" * (MAX_SPEC_BYTES + 1) + "\n", "mesh.yaml": SHOP}, "a huge file")
    with GitSpecReader(str(git_repo.path)) as reader:
        with pytest.raises(MeshcError, match="the limit is") as excinfo:
            reader.read("HEAD", "big.yaml")
        assert excinfo.value.diagnostics[0].code == "E009"
        assert reader.read("HEAD", "mesh.yaml").data == SHOP.encode()    # the batch stream is still in step
