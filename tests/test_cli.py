"""The meshc command as users run it: exit codes, output formats, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SHOP = ROOT / "examples" / "shop" / "mesh.yaml"
BAD = ROOT / "tests" / "cases" / "invalid" / "E201-unknown-upstream" / "mesh.yaml"
WARN = ROOT / "tests" / "cases" / "invalid" / "W201-retries-exceed-timeout" / "mesh.yaml"


def meshc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=60)


def test_valid_spec_exits_zero_quietly() -> None:
    result = meshc("validate", str(SHOP))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""


def test_invalid_spec_exits_one_with_positioned_error() -> None:
    result = meshc("validate", str(BAD))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{BAD}:11:16: error: ") and first.endswith("[E201]")
    assert "Traceback" not in result.stderr


def test_warnings_pass_unless_strict() -> None:
    assert meshc("validate", str(WARN)).returncode == 0
    strict = meshc("validate", "--strict", str(WARN))
    assert strict.returncode == 1 and "[W201]" in strict.stderr


def test_json_format_lists_every_field() -> None:
    result = meshc("validate", "--format", "json", str(BAD))
    assert result.returncode == 1
    [item] = json.loads(result.stderr)
    assert {k: item[k] for k in ("code", "severity", "line", "col", "file")} == {
        "code": "E201", "severity": "error", "line": 11, "col": 16, "file": str(BAD)}
    assert item["path"] == "spec.services.0.upstreams.0.service"


def test_github_format_annotates() -> None:
    result = meshc("validate", "--format", "github", str(BAD))
    assert result.stderr.startswith(f"::error file={BAD},line=11,col=16,title=E201::")


def test_default_spec_is_mesh_yaml_in_the_working_directory() -> None:
    assert meshc("validate", cwd=SHOP.parent).returncode == 0


@pytest.mark.parametrize("args", [("validate", "does-not-exist.yaml"), ("validate", "examples"),
                                  ("validate", "--format", "xml", str(SHOP)), ("no-such-verb",), ()])
def test_usage_and_io_errors_exit_two(args: tuple[str, ...]) -> None:
    result = meshc(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_message() -> None:
    result = meshc("validate", "nope/mesh.yaml")
    assert "nope/mesh.yaml: no such file [E001]" in result.stderr


def test_schema_matches_checked_in_file() -> None:
    result = meshc("schema")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "schemas" / "mesh.v1alpha1.json").read_text(), \
        "the schema drifted: run `meshc schema > schemas/mesh.v1alpha1.json`"


def test_examples_validate_against_the_json_schema() -> None:
    import jsonschema
    import yaml

    schema = json.loads((ROOT / "schemas" / "mesh.v1alpha1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for example in sorted((ROOT / "examples").glob("*/mesh.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(example.read_text())))
        assert errors == [], (example, errors[:1])
