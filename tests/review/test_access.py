"""Access changes in `meshc diff` (their own section in text, json and markdown) and the
authorization picture of `meshc graph --view access`, on real Git histories."""

from __future__ import annotations

import json

from tests.git.history import SHOP, meshc, shop_with
from tests.support.gitrepo import GitRepo

EXIT_CHANGED = 3
REVIEWS = """  - name: reviews
    image: ghcr.io/acme/reviews:1.0.0
    port: 9100
"""


def changed_shop() -> str:
    """catalog now calls a new service, the ingress loses access to frontend, frontend goes permissive."""
    text = shop_with(**{
        "    extraCallers:                 # outside the call graph: the ingress controller\n"
        "    - {namespace: ingress-nginx, serviceAccount: ingress-nginx}\n": "    mtls: permissive\n",
        "    circuitBreaker: {maxConnections: 1024, maxPendingRequests: 256, maxRequests: 1024, maxRetries: 3}\n":
        "    circuitBreaker: {maxConnections: 1024, maxPendingRequests: 256, maxRequests: 1024, maxRetries: 3}\n"
        "    upstreams:\n    - {service: reviews, localPort: 9003}\n",
    })
    return text + REVIEWS


def test_diff_reports_granted_and_revoked_permissions_and_mode_changes(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    b = git_repo.commit_file("mesh.yaml", changed_shop(), "catalog calls reviews")
    result = meshc("diff", "--repo", str(git_repo.path), a, b, "--format", "json")
    assert result.returncode == EXIT_CHANGED, result.stderr
    changes = [(c["action"], c["caller"], c["callee"], c["oldMode"], c["newMode"])
               for c in json.loads(result.stdout)["accessChanges"]]
    assert changes == [
        ("granted", "catalog", "reviews", None, None),
        ("mode", None, "frontend", "strict", "permissive"),
        ("revoked", "ingress-nginx/ingress-nginx", "frontend", None, None),
    ] or sorted(changes, key=str) == sorted([
        ("granted", "catalog", "reviews", None, None),
        ("mode", None, "frontend", "strict", "permissive"),
        ("revoked", "ingress-nginx/ingress-nginx", "frontend", None, None),
    ], key=str)
    granted = next(c for c in json.loads(result.stdout)["accessChanges"] if c["action"] == "granted")
    assert granted["identity"] == "spiffe://cluster.local/ns/shop/sa/catalog"
    assert granted["position"]["line"] == changed_shop().splitlines().index("    - {service: reviews, localPort: 9003}") + 1

    text = meshc("diff", "--repo", str(git_repo.path), a, b).stdout
    section = text[text.index("access: "):]
    assert section.startswith("access: 1 granted, 1 revoked, 1 mTLS mode changes")
    assert "  + catalog may now call reviews (spiffe://cluster.local/ns/shop/sa/catalog)" in section
    assert "  - ingress-nginx/ingress-nginx may no longer call frontend" in section
    assert "  ~ frontend: mtls strict -> permissive" in section

    markdown = meshc("diff", "--repo", str(git_repo.path), a, b, "--format", "markdown").stdout
    assert "**Access changes** (1 granted, 1 revoked, 1 mTLS mode changes):" in markdown
    assert "| + | `catalog` | may now call `reviews` |" in markdown
    assert "| ~ | `frontend` | mtls `strict` → `permissive` |" in markdown


def test_a_change_that_grants_nothing_has_no_access_section(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    b = git_repo.commit_file("mesh.yaml", shop_with(**{"replicas: 2\n": "replicas: 3\n"}), "frontend x3")
    result = meshc("diff", "--repo", str(git_repo.path), a, b, "--format", "json")
    assert result.returncode == EXIT_CHANGED
    assert json.loads(result.stdout)["accessChanges"] == []
    assert "access:" not in meshc("diff", "--repo", str(git_repo.path), a, b).stdout


def test_graph_access_view_draws_who_may_call_whom(tmp_path: object) -> None:
    result = meshc("graph", "examples/shop/mesh.yaml", "--view", "access")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert 'svc_frontend -->|"mTLS, allowed"| svc_catalog' in [line.strip() for line in lines]
    assert any("svc_extra__ingress_nginx__ingress_nginx -->" in line and "svc_frontend" in line for line in lines)
    assert not any("svc_payments" in line for line in lines)   # external: no sidecar, no identity
    dot = meshc("graph", "examples/grpc/mesh.yaml", "--view", "access", "--format", "dot").stdout
    assert '"gateway" -> "session-store" [label="mTLS or plaintext (permissive)", style=dashed];' in dot
