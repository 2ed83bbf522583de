"""`meshc graph`: well-formed Mermaid and DOT, policies on edges, deterministic."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.git.history import ROOT, SHOP, meshc
from tests.support.gitrepo import GitRepo

EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*/mesh.yaml"))
_MERMAID_NODE = re.compile(r'^    (svc_\w+)(\["|\(\["|\{\{")[^"]*("\]|"\]\)|"\}\})$')
_MERMAID_EDGE = re.compile(r'^    (svc_\w+) (-->|-\.->)\|"[^"|]*"\| (svc_\w+)$')


def mermaid_parts(text: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    """Check every line against Mermaid flowchart syntax; return node ids and edges."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes: set[str] = set()
    edges = []
    for line in lines[1:]:
        if node := _MERMAID_NODE.match(line):
            opening, closing = node.group(2), node.group(3)
            assert {"[\"": "\"]", "([\"": "\"])", "{{\"": "\"}}"}[opening] == closing, line
            nodes.add(node.group(1))
        elif edge := _MERMAID_EDGE.match(line):
            edges.append((edge.group(1), edge.group(2), edge.group(3)))
        else:
            assert re.match(r"^    (classDef external stroke-dasharray: 5 5|class [\w,]+ external)$", line), line
    assert all(a in nodes and b in nodes for a, _, b in edges)
    return nodes, edges


@pytest.mark.parametrize("spec", EXAMPLES)
def test_mermaid_is_well_formed_for_every_example(spec: str) -> None:
    result = meshc("graph", spec)
    assert result.returncode == 0, result.stderr
    mermaid_parts(result.stdout)
    assert meshc("graph", spec).stdout == result.stdout   # deterministic


def test_shop_graph_carries_policies() -> None:
    result = meshc("graph", str(ROOT / "examples" / "shop" / "mesh.yaml"))
    nodes, edges = mermaid_parts(result.stdout)
    assert nodes == {"svc_frontend", "svc_catalog", "svc_payments"}
    assert ("svc_frontend", "-->", "svc_catalog") in edges
    assert ("svc_frontend", "-.->", "svc_payments") in edges       # fail-fast drawn dashed
    lines = result.stdout.splitlines()
    catalog_edge = next(line for line in lines if "svc_frontend -->" in line)
    assert "timeout 2s<br/>retries 3, perTry 500ms<br/>v1 90% / v2 10%" in catalog_edge
    assert "fail-fast" in next(line for line in lines if "svc_frontend -.->" in line)
    assert '    svc_catalog["catalog<br/>http :9090<br/>least_request<br/>up to 4 attempts per request"]' in lines
    assert '    svc_payments{{"payments<br/>http :8443<br/>weighted<br/>external, 2 endpoints"}}' in lines
    assert "    class svc_payments external" in lines
    assert lines[1].startswith('    svc_catalog[') and 'svc_frontend(["frontend' in result.stdout  # entry point


def test_hash_key_on_the_node() -> None:
    result = meshc("graph", str(ROOT / "examples" / "grpc" / "mesh.yaml"))
    assert "ring_hash on header x-user-id" in result.stdout and "maglev on source IP" in result.stdout


def test_dot_output(tmp_path: Path) -> None:
    result = meshc("graph", "--format", "dot", str(ROOT / "examples" / "shop" / "mesh.yaml"))
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith('digraph "shop" {\n') and text.endswith("}\n")
    assert '"frontend" -> "catalog" [label="localPort 9001\\ntimeout 2s\\nretries 3, perTry 500ms\\nv1 90% / v2 10%"];' in text
    assert '"frontend" -> "payments" [label="localPort 9002\\ntimeout 15s\\nfail-fast", style=dashed];' in text
    assert 'shape=hexagon, style="dashed"' in text
    assert text.count("{") == text.count("}") and text.count('"') % 2 == 0


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
@pytest.mark.parametrize("spec", EXAMPLES)
def test_graphviz_renders_it(spec: str, tmp_path: Path) -> None:
    text = meshc("graph", "--format", "dot", spec).stdout
    rendered = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    assert "<svg" in rendered.stdout and rendered.stderr == ""


def test_graph_at_a_revision_and_of_an_invalid_spec(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.commit_file("mesh.yaml", SHOP, "shop")
    git_repo.dirty("mesh.yaml", "not: a mesh\n")
    result = meshc("graph", "--repo", str(git_repo.path), "--rev", "HEAD", "mesh.yaml")
    assert result.returncode == 0 and "svc_frontend" in result.stdout
    broken = meshc("graph", str(git_repo.path / "mesh.yaml"))
    assert broken.returncode == 1 and broken.stdout == "" and "[E101]" in broken.stderr
