"""Every folder under invalid/ is a case: mesh.yaml with the diagnostics in expected.txt.

The folder name starts with the code the case is about. `fixed.yaml`, where present, is the same
spec with the problem fixed: it must not raise that code (docs/diagnostics.md shows both).
Regenerate expected.txt after an intended message change with:
    MESHC_UPDATE_EXPECTED=1 pytest tests/cases
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshc.load import read_spec_file
from meshc.pipeline import check
from meshc.report import format_text

CASES = Path(__file__).parent / "invalid"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def diagnostics_text(spec: Path) -> list[str]:
    cwd = os.getcwd()
    os.chdir(spec.parent)
    try:
        checked = check(read_spec_file(spec.name))
    finally:
        os.chdir(cwd)
    return [format_text(d, hints=False) for d in checked.diagnostics]


def test_there_are_enough_cases() -> None:
    assert len(CASE_NAMES) >= 30


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_reports_expected_diagnostics(name: str) -> None:
    case = CASES / name
    actual = diagnostics_text(case / "mesh.yaml")
    expected_file = case / "expected.txt"
    if os.environ.get("MESHC_UPDATE_EXPECTED"):
        expected_file.write_text("".join(line + "\n" for line in actual))
    expected = expected_file.read_text().splitlines()
    assert actual == expected


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_is_about_its_code(name: str) -> None:
    code = name.split("-", 1)[0]
    actual = diagnostics_text(CASES / name / "mesh.yaml")
    assert any(f"[{code}]" in line for line in actual), actual
    has_error = any(": error: " in line for line in actual)
    assert has_error == code.startswith("E"), "E-cases must fail validation, W-cases must pass it"
    for line in actual:
        location = line.split(": ", 1)[0]
        file, row, col = location.rsplit(":", 2)
        assert file == "mesh.yaml" and int(row) >= 1 and int(col) >= 1, line


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if (CASES / n / "fixed.yaml").exists()])
def test_fixed_spec_is_clean(name: str) -> None:
    actual = diagnostics_text(CASES / name / "fixed.yaml")
    assert actual == []
