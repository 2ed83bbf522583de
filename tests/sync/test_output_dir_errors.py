"""`--output DIR` naming something that is not a directory: a usage error (exit 2) that says what is
there, before anything is planned or written, for plan, apply and watch alike."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meshc.sync.directory import DirectoryTarget
from meshc.sync.target import PermanentError
from tests.support.gitrepo import GitRepo
from tests.sync.specs import bundle_of, chain_spec

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "examples" / "shop" / "mesh.yaml"


def _file(tmp_path: Path) -> str:
    path = tmp_path / "a-file"
    path.write_text("keep me\n")
    return str(path)


NOT_DIRECTORIES: dict[str, tuple[Callable[[Path], str], str]] = {
    "device": (lambda _: os.devnull, "is a device, pipe or socket, not a directory"),
    "file": (_file, "is a file, not a directory"),
    "under-a-file": (lambda tmp: _file(tmp) + "/out", "a part of the path is a file, not a directory"),
}


@pytest.mark.parametrize("verb", ["plan", "apply"])
@pytest.mark.parametrize("name", sorted(NOT_DIRECTORIES))
def test_output_that_is_not_a_directory_is_a_usage_error(verb: str, name: str, tmp_path: Path) -> None:
    make, reason = NOT_DIRECTORIES[name]
    work = tmp_path / "work"   # beside the test's compile cache (conftest), which may be written
    work.mkdir()
    output = make(work)
    before = sorted(p.name for p in work.iterdir())
    result = subprocess.run([sys.executable, "-m", "meshc.cli", verb, str(SPEC), "--output", output],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"meshc: error: output directory {output}" in result.stderr and reason in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in work.iterdir()) == before
    if name != "device":
        assert (work / "a-file").read_text() == "keep me\n"


def test_watch_refuses_it_at_start(git_repo: GitRepo) -> None:
    git_repo.commit_file("mesh.yaml", SPEC.read_text(), "Add the mesh")
    result = subprocess.run([sys.executable, "-m", "meshc.cli", "watch", "--repo", str(git_repo.path), "--once",
                             "--output", os.devnull], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"output directory {os.devnull} is a device" in result.stderr


def test_a_file_put_where_the_directory_was_stops_the_next_plan(tmp_path: Path) -> None:
    """A long-running watch: the directory is checked again at each plan, not only at start."""
    out = tmp_path / "out"
    target = DirectoryTarget(out)
    bundle = bundle_of(chain_spec(1))
    target.apply(target.plan(bundle), bundle)
    os.rename(out, tmp_path / "moved")
    out.write_text("not a directory\n")
    with pytest.raises(PermanentError, match="is a file, not a directory"):
        target.plan(bundle)
