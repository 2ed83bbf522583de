"""The cached compiled validator (meshc.validate.compiled) answers exactly as the one pydantic builds,
is regenerated when it is stale or damaged, and is an optimisation only: without a writable cache
directory meshc validates all the same."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from meshc.validate import compiled

ROOT = Path(__file__).parents[2]
# Every spec the project keeps: each invalid case, its fixed version, and the examples.
SPECS = sorted([*ROOT.glob("tests/cases/invalid/*/mesh.yaml"), *ROOT.glob("tests/cases/invalid/*/fixed.yaml"),
                *ROOT.glob("examples/*/mesh.yaml")])


def validate(cache: Path, *specs: Path, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, compiled.CACHE_DIR_ENV: str(cache)}
    return subprocess.run([sys.executable, "-m", "meshc.cli", "validate", "--format", fmt, *map(str, specs)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("validator-*.pickle")) if cache.is_dir() else []


def validator_was_generated(cache: Path) -> bool:
    """Run install() in a fresh process: did pydantic have to generate Mesh's schema?"""
    code = ("from meshc.validate import compiled; from meshc.validate.models import Mesh\n"
            "compiled.install(Mesh); print(Mesh.__pydantic_complete__)")
    env = {**os.environ, compiled.CACHE_DIR_ENV: str(cache)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    return result.stdout.strip() == "True"


def test_the_cached_validator_reports_what_pydantics_own_does(tmp_path: Path) -> None:
    assert len(SPECS) > 100
    cache = tmp_path / "cache"
    generated = validate(cache, *SPECS)           # no cache: pydantic generates the schema, meshc keeps it
    assert len(cache_files(cache)) == 1
    assert not validator_was_generated(cache)     # the next run compiles the cached schema instead
    cached = validate(cache, *SPECS)
    assert generated.returncode == cached.returncode == 1
    assert '"code": "E101"' in generated.stdout and '"code": "W' in generated.stdout
    assert cached.stdout == generated.stdout
    assert cached.stderr == generated.stderr == ""
    text_generated = validate(tmp_path / "other", *SPECS, fmt="text")
    text_cached = validate(tmp_path / "other", *SPECS, fmt="text")
    assert text_cached.stderr == text_generated.stderr and "did you mean" in text_cached.stderr


def test_a_damaged_cache_file_is_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = ROOT / "examples" / "shop" / "mesh.yaml"
    good = validate(cache, spec)
    [path] = cache_files(cache)
    path.write_bytes(path.read_bytes()[:100])     # a write cut short, or a file of another build
    assert validator_was_generated(cache)
    again = validate(cache, spec)
    assert good.returncode == 0
    assert (again.returncode, again.stdout) == (good.returncode, good.stdout)
    schema, config = pickle.loads(path.read_bytes())
    assert schema["type"] == "definitions" and config["title"] == "Mesh"
    assert not validator_was_generated(cache)


def test_a_new_cache_file_replaces_those_of_older_sources(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    older = cache / "validator-0123456789abcdef.pickle"
    older.write_bytes(b"from an older meshc")
    unrelated = cache / "notes.txt"
    unrelated.write_text("kept")
    assert validate(cache, ROOT / "examples" / "shop" / "mesh.yaml").returncode == 0
    assert not older.exists() and unrelated.exists()
    assert len(cache_files(cache)) == 1


def test_without_a_writable_cache_directory_validation_is_unchanged(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")         # mkdir under it fails, whoever runs the test
    writable = validate(tmp_path / "cache", *SPECS)
    unwritable = validate(blocked / "cache", *SPECS)
    assert (unwritable.returncode, unwritable.stdout, unwritable.stderr) == \
        (writable.returncode, writable.stdout, writable.stderr)
    assert blocked.read_text() == "not a directory"


def test_the_key_covers_the_models_and_the_meshc_modules_they_import() -> None:
    sources = {Path(p).relative_to(ROOT).as_posix() for p in compiled.schema_sources("meshc.validate.models")}
    assert {"meshc/validate/models.py", "meshc/vocabulary.py", "meshc/durations.py",
            "meshc/defaults.py"} <= sources
    assert all(source.startswith("meshc/") for source in sources)


def test_the_key_changes_with_the_source_of_the_models(tmp_path: Path) -> None:
    module = tmp_path / "keyed_models.py"
    module.write_text(textwrap.dedent("""\
        from pydantic import BaseModel, ConfigDict

        class Spec(BaseModel):
            model_config = ConfigDict(defer_build=True)
            port: int
        """))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from keyed_models import Spec\n"
            "from meshc.validate import compiled; print(compiled.cache_key(Spec))")

    def key() -> str:
        return subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()

    first = key()
    assert key() == first
    module.write_text(module.read_text().replace("port: int", "port: int = 80"))
    assert key() != first


@pytest.mark.parametrize("value", [{"type": "str", "metadata": {"pydantic_js_functions": [lambda: None]}},
                                   [{"type": "int", "metadata": {}}]])
def test_metadata_is_dropped_from_schema_nodes_only(value: object) -> None:
    fields = {"type": "model-fields", "fields": {"metadata": {"type": "model-field", "schema": value,
                                                               "metadata": {"x": 1}}}}
    stripped = compiled.without_metadata(fields)
    assert set(stripped["fields"]) == {"metadata"}      # a field called metadata is a field
    assert "metadata" not in stripped["fields"]["metadata"]
    pickle.dumps(stripped)
    default = {"type": "default", "default": {"metadata": "data"}, "schema": {"type": "any"}}
    assert compiled.without_metadata(default) == default
