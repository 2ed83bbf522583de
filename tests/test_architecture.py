"""Boundaries, types and lint are checked by machines: import-linter contracts, mypy --strict and ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_import_contracts_hold() -> None:
    linter = shutil.which("lint-imports")
    assert linter, "import-linter is part of the test extra"
    result = subprocess.run([linter, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_meshc_is_typed_strictly() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "meshc"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_code_passes_ruff() -> None:
    """The rule set is pyproject.toml's [tool.ruff.lint]; `ruff check --fix` mends most findings."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                             "meshc", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_validate_does_not_import_cluster_clients() -> None:
    code = ("import sys; from meshc.cli import main; import contextlib, io\n"
            "with contextlib.redirect_stderr(io.StringIO()): main(['validate', 'examples/shop/mesh.yaml'])\n"
            "heavy = [m for m in ('kubernetes', 'etcd3gw', 'git', 'prometheus_client', 'ruamel') if m in sys.modules]\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
