"""Shared by the Git and review tests: a repository with a history (main, a feature branch), and running meshc."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gitrepo import GitRepo

ROOT = Path(__file__).parents[2]
SHOP = (ROOT / "examples" / "shop" / "mesh.yaml").read_text(encoding="utf-8")


def meshc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=120)


@dataclass
class History:
    repo: GitRepo
    first: str        # the shop example as mesh.yaml and deploy/mesh.yaml
    second: str       # catalog weights 70/30
    third: str        # catalog v2 removed, v1 alone at 100
    feature: str      # branch `feature` off `second`: frontend -> catalog attempts 1


def shop_with(**replacements: str) -> str:
    text = SHOP
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


V1_90 = "replicas: 3, weight: 90}"
V2_10 = "replicas: 1, weight: 10}"


@pytest.fixture
def history(git_repo: GitRepo) -> History:
    first = git_repo.commit_files({"mesh.yaml": SHOP, "deploy/mesh.yaml": SHOP}, "shop")
    second = git_repo.commit_file("mesh.yaml", shop_with(**{V1_90: "replicas: 3, weight: 70}",
                                                            V2_10: "replicas: 1, weight: 30}"}), "catalog 70/30")
    git_repo.branch("feature", checkout=True)
    feature = git_repo.commit_file("mesh.yaml", shop_with(**{
        V1_90: "replicas: 3, weight: 70}", V2_10: "replicas: 1, weight: 30}",
        "retries: {attempts: 3, perTryTimeout: 500ms": "retries: {attempts: 1, perTryTimeout: 500ms"}),
        "fewer retries to catalog")
    git_repo.checkout("main")
    third = git_repo.commit_file("mesh.yaml", shop_with(**{
        V1_90: "replicas: 3, weight: 100}",
        "    - {name: v2, image: ghcr.io/acme/catalog:2.0.0, replicas: 1, weight: 10}\n": ""}), "catalog v2 retired")
    return History(git_repo, first, second, third, feature)
