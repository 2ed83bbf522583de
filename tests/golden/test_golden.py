"""Every example builds to exactly the bytes stored in golden/<example>/ (regenerate: python -m tests.golden)."""

from __future__ import annotations

import pytest

from tests.golden import COMMAND, GOLDEN, build, difference, example_names, stale_directories, stored


@pytest.mark.parametrize("name", example_names())
def test_example_builds_to_its_golden_output(name: str) -> None:
    expected = stored(name)
    assert expected, f"golden/{name}/ is missing; create it with `{COMMAND} {name}`"
    diff = difference(expected, dict(build(name).files))
    assert not diff, f"build output of examples/{name} differs from golden/{name}/:\n{diff}\n" \
                     f"If the change is intended, run `{COMMAND}` and review the diff."


def test_every_golden_directory_belongs_to_an_example() -> None:
    assert GOLDEN.is_dir()
    assert stale_directories() == [], f"run `{COMMAND}` to remove them"


def test_golden_files_are_what_meshc_writes() -> None:
    """A golden directory is a real build output: its manifest lists every other file."""
    for name in example_names():
        files = stored(name)
        assert "manifest.json" in files
        assert files["manifest.json"].count(b'"sha256"') == len(files) - 1
