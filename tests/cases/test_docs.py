"""docs/diagnostics.md documents every code with a real case, and is current."""

from __future__ import annotations

from meshc.codes import CODES
from tests.cases.render_docs import DOC, render


def test_every_code_is_documented() -> None:
    text = DOC.read_text()
    for code in CODES:
        assert f"## {code}: " in text, code


def test_diagnostics_doc_is_current() -> None:
    assert DOC.read_text() == render(), "docs/diagnostics.md is stale: run `python -m tests.cases.render_docs`"
