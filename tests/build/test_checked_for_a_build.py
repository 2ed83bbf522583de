"""A build checks the spec with a hook that receives the IR before the semantic checks have run
(meshc.pipeline.check's on_resolved: the build's workers start there). Every invalid case must
still report exactly its diagnostics, whether its model resolves before the checks or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshc.load import read_spec_file
from meshc.pipeline import check
from meshc.resolve import ir
from tests.cases.test_invalid_cases import CASE_NAMES, CASES

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_an_invalid_case_reports_the_same_when_checked_for_a_build(name: str) -> None:
    source = read_spec_file(str(CASES / name / "mesh.yaml"))
    resolved: list[ir.Mesh] = []
    assert check(source, on_resolved=resolved.append).diagnostics == check(source).diagnostics
    assert len(resolved) <= 1


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*/mesh.yaml")), ids=lambda p: p.parent.name)
def test_a_valid_spec_hands_the_build_the_ir_it_checked(spec: Path) -> None:
    resolved: list[ir.Mesh] = []
    checked = check(read_spec_file(str(spec)), on_resolved=resolved.append)
    assert checked.ok and resolved == [checked.mesh] and resolved[0] is checked.mesh
