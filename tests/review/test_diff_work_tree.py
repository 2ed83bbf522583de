"""`meshc diff` with one revision or none compares against the work tree, as `git diff` does."""

from __future__ import annotations

import json

from tests.git.history import SHOP, V1_90, V2_10, meshc, shop_with
from tests.support.gitrepo import GitRepo

EXIT_CHANGED = 3


def test_no_revision_compares_head_with_the_edited_work_tree(git_repo: GitRepo) -> None:
    git_repo.commit_file("mesh.yaml", SHOP, "shop")
    repo = str(git_repo.path)
    assert meshc("diff", "--repo", repo).returncode == 0          # nothing edited yet
    (git_repo.path / "mesh.yaml").write_text(shop_with(**{V1_90: "replicas: 3, weight: 50}",
                                                          V2_10: "replicas: 1, weight: 50}"}))
    result = meshc("diff", "--repo", repo, "--format", "json")
    assert result.returncode == EXIT_CHANGED, result.stderr
    report = json.loads(result.stdout)
    changed = {(c["subject"], c["field"], c["old"], c["new"]) for c in report["specChanges"]}
    assert any(field.endswith("weight") and (old, new) == (90, 50) for _, field, old, new in changed), changed
    text = meshc("diff", "--repo", repo).stdout
    assert "HEAD" in text.splitlines()[0] and "work tree" in text.splitlines()[0]


def test_one_revision_compares_it_with_the_work_tree(git_repo: GitRepo) -> None:
    first = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    git_repo.commit_file("mesh.yaml", shop_with(**{V1_90: "replicas: 3, weight: 50}",
                                                   V2_10: "replicas: 1, weight: 50}"}), "50/50")
    repo = str(git_repo.path)
    assert meshc("diff", "--repo", repo, first).returncode == EXIT_CHANGED    # first vs the (clean) work tree
    assert meshc("diff", "--repo", repo, "HEAD").returncode == 0


def test_an_invalid_work_tree_is_reported_as_such(git_repo: GitRepo) -> None:
    git_repo.commit_file("mesh.yaml", SHOP, "shop")
    (git_repo.path / "mesh.yaml").write_text(SHOP.replace("port: 8080", "port: 0", 1))
    result = meshc("diff", "--repo", str(git_repo.path))
    assert result.returncode == 1
    assert "is not valid at work tree:" in result.stderr and "[E104]" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_as_second_argument_is_the_spec_compared_with_the_work_tree(git_repo: GitRepo) -> None:
    git_repo.commit_file("meshes/prod.yaml", SHOP, "prod")
    (git_repo.path / "meshes" / "prod.yaml").write_text(SHOP.replace("replicas: 3, weight: 90}",
                                                                     "replicas: 3, weight: 80}"
                                                                     ).replace("replicas: 1, weight: 10}",
                                                                               "replicas: 1, weight: 20}"))
    result = meshc("diff", "--repo", str(git_repo.path), "HEAD", "meshes/prod.yaml")
    assert result.returncode == EXIT_CHANGED, result.stderr
    assert result.stdout.startswith("meshc diff meshes/prod.yaml: HEAD")
