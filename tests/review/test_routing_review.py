"""`meshc diff` and `meshc graph` show request routes and gateways."""

from __future__ import annotations

from pathlib import Path

from tests.git.history import ROOT, meshc
from tests.review.test_diff import EXIT_CHANGED, diff_json, spec_changes
from tests.review.test_graph import mermaid_parts
from tests.support.gitrepo import GitRepo

BOOKINFO = (ROOT / "examples" / "bookinfo-routing" / "mesh.yaml").read_text(encoding="utf-8")
JASON_V2 = "      version: v2\n"


def test_diff_names_a_changed_route_and_a_new_gateway_route(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", BOOKINFO, "jason on v2")
    after = BOOKINFO.replace(JASON_V2, "      version: v3\n").replace(
        "    - {match: {path: {exact: /logout}}, service: productpage}\n",
        "    - {match: {path: {exact: /logout}}, service: productpage}\n"
        "    - {match: {path: {prefix: /reviews}}, service: reviews}\n")
    b = git_repo.commit_file("mesh.yaml", after, "jason on v3, reviews behind the gateway")
    code, report = diff_json(git_repo, a, b)
    assert code == EXIT_CHANGED
    changes = spec_changes(report)
    assert ("changed", "service reviews, route jason", "versions.v2", 100, None) in changes, changes
    assert ("changed", "service reviews, route jason", "versions.v3", None, 100) in changes, changes
    gateway = [c for c in changes if c[1] == "gateway bookinfo"]
    assert gateway and gateway[0][0] == "changed" and gateway[0][2].startswith("routes"), gateway
    text = meshc("diff", "--repo", str(git_repo.path), a, b)
    assert "service reviews, route jason" in text.stdout
    assert "gateway bookinfo" in text.stdout
    # the consequences: the gateway's files and its Kubernetes objects change
    assert "gateway-bookinfo" in text.stdout


def test_diff_shows_a_new_fault(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", BOOKINFO, "base")
    after = BOOKINFO.replace(JASON_V2, JASON_V2 + "      fault: {abort: {status: 503, percent: 5}}\n")
    b = git_repo.commit_file("mesh.yaml", after, "chaos for jason")
    _, report = diff_json(git_repo, a, b)
    assert ("changed", "service reviews, route jason", "fault", None, "abort 503 5%") in spec_changes(report)


def test_graph_draws_gateways_and_routes(tmp_path: Path) -> None:
    result = meshc("graph", str(ROOT / "examples" / "bookinfo-routing" / "mesh.yaml"))
    assert result.returncode == 0, result.stderr
    nodes, edges = mermaid_parts(result.stdout)
    assert "svc_gateway_bookinfo" in nodes
    assert ("svc_gateway_bookinfo", "-->", "svc_productpage") in edges
    assert "if header end-user exact jason: v2" in result.stdout
    assert "delay 7s 100%" in result.stdout
    dot = meshc("graph", str(ROOT / "examples" / "bookinfo-routing" / "mesh.yaml"), "--format", "dot")
    assert '"gateway-bookinfo" -> "productpage"' in dot.stdout
