"""The pre-commit hook definition: the hook runs `meshc validate` on mesh.yaml files, several at once."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.git.history import ROOT, meshc


def hooks() -> dict[str, dict[str, object]]:
    loaded = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    return {hook["id"]: hook for hook in loaded}


def test_hook_definition() -> None:
    hook = hooks()["meshc-validate"]
    assert hook["entry"] == "meshc validate" and hook["language"] == "python"
    files = re.compile(str(hook["files"]))
    assert all(files.search(p) for p in ("mesh.yaml", "deploy/mesh.yml", "clusters/eu/mesh.yaml"))
    assert not any(files.search(p) for p in ("mesh.yaml.bak", "refresh.yaml", "mesh.json"))
    assert hooks()["meshc-validate-strict"]["entry"] == "meshc validate --strict"


def test_entry_accepts_the_file_list_pre_commit_passes(tmp_path: Path) -> None:
    good = ROOT / "examples" / "shop" / "mesh.yaml"
    bad = tmp_path / "mesh.yaml"
    bad.write_text(good.read_text().replace("weight: 10}", "weight: 20}"))
    entry = str(hooks()["meshc-validate"]["entry"]).split()[1:]
    assert meshc(*entry, str(good), str(ROOT / "examples" / "canary" / "mesh.yaml")).returncode == 0
    result = meshc(*entry, str(good), str(bad))
    # E206 points at catalog's `versions:`
    versions = next(i for i, line in enumerate(bad.read_text().splitlines(), 1) if line.strip() == "versions:")
    assert result.returncode == 1 and f"{bad}:{versions}:5: error:" in result.stderr and "1 error" in result.stderr
