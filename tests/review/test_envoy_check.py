"""`meshc build --verify-envoy`: real Envoy checks every sidecar with its cds/lds folded in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshc.review.envoy_check import find_envoy, sidecars, static_bootstrap, validate_sidecars

ROOT = Path(__file__).parents[2]
SHOP = ROOT / "examples" / "shop" / "mesh.yaml"

pytestmark = pytest.mark.envoy


def meshc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("shop") / "out"
    result = meshc("build", str(SHOP), "-o", str(out), "--verify-envoy")
    assert result.returncode == 0, result.stderr
    assert "accepts all 2 sidecars" in result.stderr
    return read_tree(out)


def test_folding_keeps_the_bootstrap_and_makes_every_xds_resource_static(shop_files: dict[str, bytes]) -> None:
    assert sidecars(shop_files) == ["catalog", "frontend"]
    parts = [shop_files[f"envoy/frontend/{name}"] for name in ("bootstrap.yaml", "cds.yaml", "lds.yaml")]
    folded = static_bootstrap(*parts)
    bootstrap, cds, lds = (json.loads(p) for p in parts)
    assert "dynamic_resources" not in folded and folded["admin"] == bootstrap["admin"]
    names = {r["name"] for r in folded["static_resources"]["clusters"]}
    assert {r["name"] for r in cds["resources"]} < names
    assert [r["name"] for r in folded["static_resources"]["listeners"]][1:] == [r["name"] for r in lds["resources"]]
    assert all("@type" not in r for r in folded["static_resources"]["clusters"])


def test_envoy_rejects_what_validate_mode_on_the_bootstrap_alone_would_pass(shop_files: dict[str, bytes]) -> None:
    envoy = find_envoy()
    assert envoy is not None
    broken = dict(shop_files)
    cds = json.loads(broken["envoy/frontend/cds.yaml"])
    cds["resources"][0]["lb_policy"] = "NO_SUCH_POLICY"
    broken["envoy/frontend/cds.yaml"] = json.dumps(cds).encode()
    (rejection,) = validate_sidecars(broken, envoy)
    assert rejection.service == "frontend" and "NO_SUCH_POLICY" in rejection.message
    assert validate_sidecars(shop_files, envoy) == []


def test_without_an_envoy_binary_verify_envoy_is_a_usage_error(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "MESHC_ENVOY": str(tmp_path / "missing"), "PYTHONPATH": str(ROOT)}
    result = meshc("build", str(SHOP), "-o", str(tmp_path / "out"), "--verify-envoy", env=env)
    assert result.returncode == 2 and "--verify-envoy needs an envoy binary" in result.stderr
    assert not (tmp_path / "out").exists()
