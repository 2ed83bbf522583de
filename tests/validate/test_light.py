"""Light models (meshc.validate.light): a `meshc validate` or `meshc build` that finds Mesh's compiled
validator in the cache declares the spec's models without pydantic. It must answer exactly as with
pydantic's models (diagnostics, spelling hints, IR, every output byte), and fall back to them
whenever the cache cannot be used. Every run is its own process, so that the mode is really the
one asked for, and each reports which it used."""

from __future__ import annotations

import filecmp
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshc import cache as meshc_cache

ROOT = Path(__file__).parents[2]
SPECS = sorted([*ROOT.glob("tests/cases/invalid/*/mesh.yaml"), *ROOT.glob("tests/cases/invalid/*/fixed.yaml"),
                *ROOT.glob("examples/*/mesh.yaml")])
EXAMPLES = sorted(ROOT.glob("examples/*/mesh.yaml"))
# Enough specs to exercise structural, semantic and warning diagnostics, for the tests whose subject
# is whether the cache is used, not what every spec gives (which the tests above compare in full).
SAMPLE = sorted({*EXAMPLES, *SPECS[::12]})

# meshc's main() in light mode ("light") or not ("pydantic"), then what the process used, in a file.
RUN = """
import json, sys
from meshc.cli import main
from meshc.validate import light
mode, status, *argv = sys.argv[1:]
code = main(argv, light_models=mode == "light")
models = sys.modules.get("meshc.validate.models")
with open(status, "w") as out:
    json.dump({"exit": code, "light": light.active(), "pydantic": "pydantic" in sys.modules,
               "pydantic_core_package": "pydantic_core" in sys.modules,
               "models_base": models.BaseModel.__module__ if models else None}, out)
"""


def meshc(cache: Path, mode: str, *argv: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    status = cache.parent / f"status-{mode}.json"
    status.unlink(missing_ok=True)
    env = {**os.environ, meshc_cache.CACHE_DIR_ENV: str(cache)}
    result = subprocess.run([sys.executable, "-c", RUN, mode, str(status), *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert status.exists(), result.stderr
    used: dict[str, Any] = json.loads(status.read_text())
    return result, used


def validator_file(cache: Path) -> Path:
    [path] = sorted(cache.glob("validator-*.pickle"))
    return path


@pytest.fixture(scope="module")
def warmed_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("warmed") / "cache"
    first, used = meshc(cache, "light", "validate", str(EXAMPLES[0]))
    assert first.returncode == 0 and not used["light"]     # nothing cached yet: pydantic's models
    return cache


@pytest.fixture
def warm_cache(warmed_once: Path, tmp_path: Path) -> Path:
    """A cache holding Mesh's compiled validator, the test's own copy (some tests damage it)."""
    cache = tmp_path / "cache"
    shutil.copytree(warmed_once, cache)
    return cache


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_light_models_report_what_pydantics_do(warm_cache: Path, fmt: str) -> None:
    argv = ["validate", "--format", fmt, *map(str, SPECS)]
    light, light_used = meshc(warm_cache, "light", *argv)
    full, full_used = meshc(warm_cache, "pydantic", *argv)
    assert light_used == {"exit": 1, "light": True, "pydantic": False, "pydantic_core_package": False,
                          "models_base": "meshc.validate.light"}
    assert full_used == {"exit": 1, "light": False, "pydantic": True, "pydantic_core_package": True,
                         "models_base": "pydantic.main"}
    assert (light.returncode, light.stdout, light.stderr) == (full.returncode, full.stdout, full.stderr)
    shown = light.stdout + light.stderr
    for code in ("E101", "E102", "E103", "E104", "E106", "E603", "W"):   # structural, semantic, warnings
        assert code in shown, code
    assert "did you mean" in shown


def test_light_models_build_the_same_files(warm_cache: Path, tmp_path: Path) -> None:
    for spec in EXAMPLES:
        outputs = {}
        for mode in ("light", "pydantic"):
            out = tmp_path / "out" / mode / spec.parent.name
            result, used = meshc(warm_cache, mode, "build", str(spec), "-o", str(out))
            assert result.returncode == 0, result.stderr
            assert used["light"] is (mode == "light") and used["pydantic"] is (mode == "pydantic")
            outputs[mode] = out
        assert_same_tree(outputs["light"], outputs["pydantic"])


def assert_same_tree(left: Path, right: Path) -> None:
    files = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(left, right, [str(f) for f in files], shallow=False)
    assert mismatch == errors == []


@pytest.mark.parametrize("verb", ["validate", "plan"])
def test_the_meshc_command_uses_light_models(warm_cache: Path, tmp_path: Path, verb: str) -> None:
    """validate, and a verb whose module imports the models itself (the choice is made before)."""
    env = {**os.environ, meshc_cache.CACHE_DIR_ENV: str(warm_cache)}
    target = ["--output", str(tmp_path / "out")] if verb == "plan" else []
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "meshc.cli", verb, str(EXAMPLES[0]), *target],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "meshc.validate.models" in imported and "meshc.resolve.ir" in imported
    assert not {name for name in imported if name == "pydantic" or name.startswith("pydantic.")}
    assert "pydantic_core" not in imported and "pydantic_core.core_schema" not in imported   # the package's __init__


def test_without_a_cached_validator_the_models_are_pydantics(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = str(EXAMPLES[0])
    generated, used = meshc(cache, "light", "validate", "--format", "json", spec)
    assert not used["light"] and used["pydantic"] and validator_file(cache).exists()
    cached, used = meshc(cache, "light", "validate", "--format", "json", spec)
    assert used["light"] and not used["pydantic"]
    assert (cached.returncode, cached.stdout) == (generated.returncode, generated.stdout)


def _schema_cut_short(path: Path) -> None:
    with path.open("rb") as file:
        pickle.load(file)                 # the aliases stay whole: the models are imported light, then
        end = file.tell()
    path.write_bytes(path.read_bytes()[:end + 200])     # the schema cannot be read


def _aliases_of_other_models(path: Path) -> None:
    with path.open("rb") as file:
        aliases, rest = pickle.load(file), file.read()
    del aliases["meshc.validate.models.Service"]
    path.write_bytes(pickle.dumps(aliases) + rest)


def _not_a_pickle(path: Path) -> None:
    path.write_bytes(b"from another meshc")


def _writable_by_others(path: Path) -> None:
    path.chmod(0o666)


@pytest.mark.parametrize("damage", [_schema_cut_short, _aliases_of_other_models, _not_a_pickle,
                                    _writable_by_others])
def test_a_cache_file_that_cannot_be_used_falls_back_to_pydantics_models(warm_cache: Path, damage: Any) -> None:
    argv = ["validate", "--format", "json", *map(str, SAMPLE)]
    good, used = meshc(warm_cache, "light", *argv)
    assert used["light"]
    path = validator_file(warm_cache)
    damage(path)
    again, used = meshc(warm_cache, "light", *argv)
    assert not used["light"] and used["pydantic"] and used["models_base"] == "pydantic.main"
    assert (again.returncode, again.stdout, again.stderr) == (good.returncode, good.stdout, good.stderr)
    assert path.stat().st_mode & 0o777 == 0o600          # written anew
    _, used = meshc(warm_cache, "light", *argv)
    assert used["light"]                                  # and used again


# Every model class: its fields' names in the spec and what model_construct() makes of it, with no
# values and with every field given (by name, as meshc does); a validated example, pickled for the other kind to read; the
# IR of every example.
PROBE = """
import pickle, sys
from pathlib import Path
from meshc.load import load_yaml, read_spec_file
from meshc.validate import compiled
from meshc.validate.light import BaseModel as LightModel

mode, spec, out, *examples = sys.argv[1:]
light = mode == "light" and compiled.load_light()
from meshc.validate import models
compiled.install(models.Mesh)
assert issubclass(models.Mesh, LightModel) is (mode == "light") is light

def shape(instance):
    return repr(sorted(instance.__dict__.items())), sorted(instance.__pydantic_fields_set__), \\
        instance.__pydantic_extra__, instance.__pydantic_private__

classes = {}
for name, cls in sorted(vars(models).items()):
    if isinstance(cls, type) and issubclass(cls, models.Model) and cls is not models.Model:
        aliases = models.spec_names(cls)
        given = cls.model_construct(**{field: f"<{field}>" for field in aliases})
        classes[name] = [aliases, shape(cls.model_construct()), shape(given)]
mesh = models.Mesh.model_validate(load_yaml(read_spec_file(spec)).data)
from meshc.pipeline import check
irs = {example: repr(check(read_spec_file(example)).mesh) for example in examples}
Path(out).write_bytes(pickle.dumps({"classes": classes, "mesh": mesh, "irs": irs,
                                    "equal": mesh == pickle.loads(pickle.dumps(mesh)) and hash(mesh.metadata) == hash(
                                        pickle.loads(pickle.dumps(mesh.metadata)))}))
"""


def test_light_models_are_constructed_compared_and_pickled_as_pydantics(warm_cache: Path, tmp_path: Path) -> None:
    env = {**os.environ, meshc_cache.CACHE_DIR_ENV: str(warm_cache)}
    spec = str(ROOT / "examples" / "boutique" / "mesh.yaml")
    results = {}
    for mode in ("light", "pydantic"):
        out = tmp_path / f"{mode}.pickle"
        run = subprocess.run([sys.executable, "-c", PROBE, mode, spec, str(out), *map(str, EXAMPLES)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        results[mode] = out.read_bytes()
    full = pickle.loads(results["pydantic"])
    light = pickle.loads(results["light"])      # read here with pydantic's models: the light ones pickled as they do
    assert len(full["classes"]) >= 68
    assert light["classes"] == full["classes"]
    assert light["mesh"] == full["mesh"] and type(light["mesh"]) is type(full["mesh"])
    assert light["equal"] and full["equal"]
    assert light["irs"] == full["irs"] and len(full["irs"]) == len(EXAMPLES)
    assert all(ir.startswith("Mesh(") for ir in full["irs"].values())


def test_diff_reports_the_same_in_light_mode(warm_cache: Path, tmp_path: Path) -> None:
    """`meshc diff` checks two revisions: with light models too, and with the same report."""
    from tests.support.gitrepo import GitRepo

    repo = GitRepo.init(tmp_path / "repo")
    text = (ROOT / "examples" / "shop" / "mesh.yaml").read_text()
    first = repo.commit_file("mesh.yaml", text, "first")
    edited = text.replace("replicas: 2", "replicas: 3", 1)
    assert edited != text
    second = repo.commit_file("mesh.yaml", edited, "second")
    reports = {}
    for mode in ("light", "pydantic"):
        result, used = meshc(warm_cache, mode, "diff", "--repo", str(repo.path), first, second, "--format", "json")
        assert used["exit"] == 3, result.stderr       # changed
        assert used["light"] is (mode == "light") and used["pydantic"] is (mode == "pydantic")
        reports[mode] = json.loads(result.stdout)
    assert reports["light"] == reports["pydantic"] and reports["light"]["specChanges"]
