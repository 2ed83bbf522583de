"""Same input, same bytes: across runs, across hash seeds, and across reorderings of the spec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from meshc.emit import naming
from meshc.load import SpecSource
from tests.build.specs import EXAMPLES, dump_spec, load_spec, reordered
from tests.build.tree import ROOT, compiled, files

HASH_SEEDS = ("0", "1", "4294967295")
REORDER_SEEDS = (1, 2, 3)


def test_two_builds_in_one_process_are_byte_identical(spec_paths: dict[str, Path]) -> None:
    for path in spec_paths.values():
        assert compiled(path).files == compiled(path).files


def test_meshc_build_is_byte_identical_across_hash_seeds(spec_paths: dict[str, Path], tmp_path: Path) -> None:
    running = []
    for seed in HASH_SEEDS:
        for name, spec in spec_paths.items():
            out = tmp_path / seed / name
            env = dict(os.environ, PYTHONHASHSEED=seed)
            running.append(subprocess.Popen([sys.executable, "-m", "meshc.cli", "build", str(spec), "-o", str(out)],
                                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for process in running:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    for name, spec in spec_paths.items():
        trees = [files(tmp_path / seed / name) for seed in HASH_SEEDS]
        assert trees[0] == trees[1] == trees[2], name
        assert trees[0] == dict(compiled(spec).files), name


@pytest.mark.parametrize("seed", REORDER_SEEDS)
@pytest.mark.parametrize("name", [*EXAMPLES, "synthetic"])
def test_a_reordered_spec_builds_the_same_files(spec_paths: dict[str, Path], name: str, seed: int) -> None:
    original = compiled(spec_paths[name])
    shuffled_text = dump_spec(reordered(load_spec(spec_paths[name]), seed))
    shuffled = compiled(SpecSource("mesh.yaml", shuffled_text.encode()))
    assert shuffled_text.encode() != spec_paths[name].read_bytes()
    assert list(shuffled.files) == list(original.files)
    for path, data in original.files.items():
        if path != naming.MANIFEST_PATH:
            assert shuffled.files[path] == data, path
    # The manifest names the spec's digest, which differs; everything it says about the files does not.
    old, new = orjson.loads(original.files[naming.MANIFEST_PATH]), orjson.loads(shuffled.files[naming.MANIFEST_PATH])
    assert old["source"]["digest"] != new["source"]["digest"]
    assert {**old, "source": None} == {**new, "source": None}


def test_reordering_really_permutes_what_it_claims_to() -> None:
    spec = load_spec(ROOT / "examples" / "canary" / "mesh.yaml")
    orders = {tuple(s["name"] for s in reordered(spec, seed)["spec"]["services"]) for seed in range(8)}
    assert len(orders) > 1
    versions = {tuple(v["name"] for v in next(s for s in reordered(spec, seed)["spec"]["services"]
                                              if s["name"] == "checkout")["versions"]) for seed in range(8)}
    assert len(versions) > 1
