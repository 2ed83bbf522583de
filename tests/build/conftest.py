"""Shared inputs of the build tests: the example specs and a synthetic mesh, as files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.build.specs import EXAMPLES, dump_spec, example_path, synthetic_spec


@pytest.fixture(scope="session")
def spec_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every example, plus `synthetic`: a mesh using every feature."""
    synthetic = tmp_path_factory.mktemp("synthetic") / "mesh.yaml"
    synthetic.write_text(dump_spec(synthetic_spec()), encoding="utf-8")
    return {**{name: example_path(name) for name in EXAMPLES}, "synthetic": synthetic}
