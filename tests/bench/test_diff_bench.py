"""bench/diff.py: its repository changes one image in its last commit, and it reports every
command it times (the diff without and with the old revision's check kept) with paired ratios to
`meshc validate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.diff import ROOT, make_repo


def test_the_last_commit_changes_one_image(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, 20)
    changed = subprocess.run(["git", "-C", str(repo), "diff", "-U0", "HEAD~1", "HEAD"], capture_output=True,
                             text=True, check=True).stdout
    removed = [line for line in changed.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in changed.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert len(removed) == len(added) == 1
    # the same line, but for the image's tag
    assert added[0][1:] == removed[0][1:].replace(image_of(removed[0]), image_of(removed[0]) + "-next")


def image_of(line: str) -> str:
    return line.split("image: ", 1)[1].split(",")[0].split()[0].rstrip("}")


def test_it_reports_validate_and_the_diffs_with_paired_ratios() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.diff", "--services", "20", "--pairs", "1", "--each-jobs"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("N = 20, 1 pairs, load average")
    assert [line.split()[0] for line in lines[1:]] == ["validate", "diff", "diff", "diff", "diff,"]
    assert "--jobs 1" in lines[3] and "--jobs 2" in lines[4] and "diff, kept" in lines[5]
    assert "wall 1.00x, CPU 1.00x" in lines[1]   # validate against itself
    assert all("paired ratio to validate: wall" in line and "MiB" in line for line in lines[1:])
