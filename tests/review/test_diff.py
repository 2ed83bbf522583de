"""`meshc diff` on real Git histories: the spec's terms, positions, consequences, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.git.history import SHOP, History, V1_90, V2_10, meshc, shop_with
from tests.support.gitrepo import GitRepo

EXIT_CHANGED = 3


def diff_json(repo: GitRepo, rev_a: str, rev_b: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = meshc("diff", "--repo", str(repo.path), rev_a, rev_b, *extra, "--format", "json")
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout) if result.stdout else {}


def spec_changes(report: dict[str, Any]) -> list[tuple[str, str, str, Any, Any]]:
    return [(c["action"], c["subject"], c["field"], c["old"], c["new"]) for c in report["specChanges"]]


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def test_weights_70_to_50_are_named_with_positions(git_repo: GitRepo) -> None:
    before = shop_with(**{V1_90: "replicas: 3, weight: 70}", V2_10: "replicas: 1, weight: 30}"})
    after = shop_with(**{V1_90: "replicas: 3, weight: 50}", V2_10: "replicas: 1, weight: 50}"})
    # The new revision also gains two comment lines above catalog: positions differ per revision.
    after = after.replace("  - name: catalog\n", "  # catalog: halfway\n  # to v2\n  - name: catalog\n")
    a = git_repo.commit_file("mesh.yaml", before, "70/30")
    b = git_repo.commit_file("mesh.yaml", after, "50/50")
    code, report = diff_json(git_repo, a, b)
    assert code == EXIT_CHANGED and report["changed"] is True
    assert spec_changes(report) == [
        ("changed", "service catalog, version v1", "weight", 70, 50),
        ("changed", "service catalog, version v2", "weight", 30, 50),
    ]
    v1 = report["specChanges"][0]
    assert v1["oldPosition"] == {"file": "mesh.yaml", "line": line_of(before, "name: v1"), "col": 66}
    assert v1["newPosition"] == {"file": "mesh.yaml", "line": line_of(after, "name: v1"), "col": 66}
    assert v1["newPosition"]["line"] == v1["oldPosition"]["line"] + 2
    assert report["old"]["revision"] == a and report["new"]["revision"] == b
    text = meshc("diff", "--repo", str(git_repo.path), a, b)
    assert text.returncode == EXIT_CHANGED
    assert "~ service catalog, version v1: weight 70 -> 50" in text.stdout
    assert f"at mesh.yaml:{v1['oldPosition']['line']}:66 ({a}) -> mesh.yaml:{v1['newPosition']['line']}:66 ({b})" \
        in text.stdout


def test_nothing_changed_exits_zero(history: History) -> None:
    repo = history.repo
    commented = repo.show("HEAD", "mesh.yaml") + "\n# a comment changes no meaning\n"
    noop = repo.commit_file("mesh.yaml", commented, "comment only")
    empty = repo.commit_empty("empty commit")
    for rev_a, rev_b in ((history.third, noop), (noop, empty), ("HEAD", "HEAD")):
        result = meshc("diff", "--repo", str(repo.path), rev_a, rev_b)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no changes" in result.stdout
    code, report = diff_json(repo, history.third, noop)
    assert code == 0 and report["specChanges"] == [] and report["outputChanges"] == []


def test_policies_and_services_in_the_specs_terms(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    changed = shop_with(**{
        "timeout: 2s\n      retries: {attempts: 3, perTryTimeout: 500ms,":
            "timeout: 3s\n      retries: {attempts: 2, perTryTimeout: 500ms,",
        "loadBalancer: least_request": "loadBalancer: {policy: ring_hash, hashOn: {header: x-user}}",
        "failurePolicy: fail_fast": "failurePolicy: retry",
        "- {address: 10.20.0.6, port: 8443, weight: 1}": "- {address: 10.20.0.6, port: 8443, weight: 2}",
        "healthCheck: {path: /healthz, interval: 5s,": "healthCheck: {path: /healthz, interval: 10s,",
        "consecutive5xx: 5, interval: 10s": "consecutive5xx: 7, interval: 10s",
        "maxPendingRequests: 256": "maxPendingRequests: 128",
    })
    changed += ("  - name: search\n    image: ghcr.io/acme/search:1.0.0\n    port: 9400\n")
    changed = changed.replace("entryPoints: [frontend]", "entryPoints: [frontend, search]")
    b = git_repo.commit_file("mesh.yaml", changed, "policies")
    code, report = diff_json(git_repo, a, b)
    assert code == EXIT_CHANGED
    found = {(s, f): (o, n) for action, s, f, o, n in spec_changes(report) if action == "changed"}
    assert found[("route frontend -> catalog", "timeout")] == ("2s", "3s")
    assert found[("route frontend -> catalog", "retries.attempts")] == (3, 2)
    assert found[("service catalog", "loadBalancer.policy")] == ("least_request", "ring_hash")
    assert found[("service catalog", "loadBalancer.hashOn")] == (None, {"header": "x-user"})
    assert found[("route frontend -> payments", "failurePolicy")] == ("fail_fast", "retry")
    assert found[("route frontend -> payments", "retries")][0] is None     # fail_fast had no retries
    assert found[("service payments, endpoint 10.20.0.6:8443", "weight")] == (1, 2)
    assert found[("service frontend", "healthCheck.interval")] == ("5s", "10s")
    assert found[("service catalog", "outlierDetection.consecutive5xx")] == (5, 7)
    assert found[("service catalog", "circuitBreaker.maxPendingRequests")] == (256, 128)
    added = [(s, n) for action, s, _, _, n in spec_changes(report) if action == "added"]
    assert [s for s, _ in added] == ["service search"]
    assert report["specChanges"][-1]["newPosition"]["line"] == line_of(changed, "- name: search")
    # The removal direction names the same service as removed, at its old position.
    code, back = diff_json(git_repo, b, a)
    removed = [c for c in back["specChanges"] if c["action"] == "removed"]
    assert [c["subject"] for c in removed] == ["service search"] and removed[0]["newPosition"] is None


def test_defaults_change_reaches_every_route_it_applies_to(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    b = git_repo.commit_file("mesh.yaml", SHOP.replace("    timeout: 15s\n", "    timeout: 20s\n"), "defaults")
    code, report = diff_json(git_repo, a, b)
    assert spec_changes(report) == [("changed", "route frontend -> payments", "timeout", "15s", "20s")]
    position = report["specChanges"][0]["newPosition"]
    assert position["line"] == line_of(SHOP, "    timeout: 15s")    # where the inherited value is written


def test_consequences_name_objects_keys_and_files(history: History) -> None:
    repo = history.repo
    code, report = diff_json(repo, history.second, history.third)   # catalog v2 retired
    assert code == EXIT_CHANGED
    assert ("removed", "service catalog, version v2") in {(c["action"], c["subject"]) for c in report["specChanges"]}
    outputs = {(c["target"], c["action"], c["name"]) for c in report["outputChanges"]}
    assert ("kubernetes", "removed", "Deployment shop/catalog-v2") in outputs
    assert ("kubernetes", "removed", "Service shop/catalog-v2") in outputs
    assert ("etcd", "changed", "/meshc/shop/services/catalog") in outputs
    assert ("envoy", "changed", "envoy/frontend/cds.yaml") in outputs
    cds = next(c for c in report["outputChanges"] if c["name"] == "envoy/frontend/cds.yaml")
    assert "cluster catalog|v2 removed" in cds["details"]
    etcd = next(c for c in report["outputChanges"] if c["target"] == "etcd")
    assert any(detail.startswith("versions") for detail in etcd["details"])
    assert not any(c["file"] == "manifest.json" for c in report["outputChanges"])


def test_markdown_is_made_for_a_pull_request(history: History) -> None:
    result = meshc("diff", "--repo", str(history.repo.path), "main", "feature", "--format", "markdown")
    assert result.returncode == EXIT_CHANGED
    text = result.stdout
    assert text.startswith("<!-- meshc-diff -->\n### meshc diff: `mesh.yaml` from `main` (`")
    assert "| | added | changed | removed |" in text and "| Spec | 1 | 2 | 0 |" in text
    assert "<details open><summary><b>Spec changes (3)</b></summary>" in text
    assert "| ~ | route frontend -> catalog | `retries.attempts` `3` → `1` |" in text
    assert "| + | service catalog, version v2 | added: weight 30, image ghcr.io/acme/catalog:2.0.0, replicas 1 |" in text
    assert "| Kubernetes objects | 2 | 1 | 0 |" in text
    assert "<details><summary><b>Kubernetes objects" in text and text.count("<details") == text.count("</details>")


def test_invalid_side_is_named_with_its_diagnostics(history: History) -> None:
    repo = history.repo
    bad = repo.commit_file("mesh.yaml", SHOP.replace("weight: 10}", "weight: 20}"), "bad weights")
    result = meshc("diff", "--repo", str(repo.path), history.third, bad)
    assert result.returncode == 1 and result.stdout == ""
    assert f"mesh.yaml is not valid at {bad}" in result.stderr
    assert "sum to 110, not 100 [E206]" in result.stderr
    assert f"the spec is invalid at {bad}" in result.stderr


def test_usage_and_io_errors_exit_two(history: History, tmp_path: Path) -> None:
    repo = str(history.repo.path)
    assert meshc("diff", "--repo", repo, "main", "no-such-rev").returncode == 2
    assert meshc("diff", "--repo", str(tmp_path), "main", "feature").returncode == 2
    both_missing = meshc("diff", "--repo", repo, "main", "feature", "nothing.yaml")
    assert both_missing.returncode == 2 and "no such file at main nor at feature" in both_missing.stderr
    assert meshc("diff", "--repo", repo, "main", "--", "--bad").returncode == 2   # not a revision


def test_spec_appearing_in_a_revision_is_all_added(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("README.md", "hello\n", "readme")
    b = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    code, report = diff_json(git_repo, a, b)
    assert code == EXIT_CHANGED and report["old"]["exists"] is False
    added = {c["subject"] for c in report["specChanges"] if c["action"] == "added"}
    assert {"service frontend", "service catalog", "service payments", "mesh shop"} <= added
    assert ("kubernetes", "added", "Namespace shop") in {(c["target"], c["action"], c["name"])
                                                         for c in report["outputChanges"]}


def test_new_warnings_are_reported(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    b = git_repo.commit_file("mesh.yaml", SHOP.replace("      timeout: 2s\n", "      timeout: 1s\n"), "tight timeout")
    code, report = diff_json(git_repo, a, b)
    assert code == EXIT_CHANGED
    assert [(w["code"], w["line"]) for w in report["warningsIntroduced"]] == [("W201", line_of(SHOP, "attempts: 3"))]
    assert "4 tries x perTryTimeout 500ms = 2s exceeds the route timeout 1s" in report["warningsIntroduced"][0]["message"]
    assert report["warningsResolved"] == []
    _, back = diff_json(git_repo, b, a)
    assert [w["code"] for w in back["warningsResolved"]] == ["W201"] and back["warningsIntroduced"] == []
    text = meshc("diff", "--repo", str(git_repo.path), a, b).stdout
    assert "warnings introduced: 1" in text and "[W201]" in text


def test_bare_repository_and_subdirectory_spec(history: History, tmp_path: Path) -> None:
    bare = history.repo.clone_bare(tmp_path / "bare.git")
    assert meshc("diff", "--repo", str(bare.path), history.first, "main", "deploy/mesh.yaml").returncode == 0
    code, report = diff_json(bare, history.first, "main")
    assert code == EXIT_CHANGED and len(report["specChanges"]) == 2


def test_dirty_work_tree_does_not_change_the_diff(history: History) -> None:
    repo = history.repo
    clean = meshc("diff", "--repo", str(repo.path), "main~1", "main", "--format", "json").stdout
    repo.dirty("mesh.yaml", "garbage: [\n")
    assert meshc("diff", "--repo", str(repo.path), "main~1", "main", "--format", "json").stdout == clean


def test_declaring_versions_reads_as_versions_not_as_unset_images(git_repo: GitRepo) -> None:
    a = git_repo.commit_file("mesh.yaml", SHOP, "shop")
    versioned = SHOP.replace("    image: ghcr.io/acme/frontend:1.4.2\n", (
        "    versions:\n"
        "    - {name: blue, image: ghcr.io/acme/frontend:1.4.2, weight: 50}\n"
        "    - {name: green, image: ghcr.io/acme/frontend:1.5.0, weight: 50}\n"))
    b = git_repo.commit_file("mesh.yaml", versioned, "blue/green")
    code, report = diff_json(git_repo, a, b)
    assert spec_changes(report) == [
        ("changed", "service frontend", "versions", "implicit (one)", "declared"),
        ("added", "service frontend, version blue", None, None, report["specChanges"][1]["new"]),
        ("added", "service frontend, version green", None, None, report["specChanges"][2]["new"]),
    ]
    assert report["specChanges"][2]["new"]["image"] == "ghcr.io/acme/frontend:1.5.0"
    outputs = {(c["action"], c["name"]) for c in report["outputChanges"] if c["target"] == "kubernetes"}
    assert {("removed", "Deployment shop/frontend"), ("added", "Deployment shop/frontend-blue"),
            ("added", "Deployment shop/frontend-green")} <= outputs


BOUTIQUE = (Path(__file__).resolve().parents[2] / "examples" / "boutique" / "mesh.yaml").read_text()


def test_workload_settings_read_in_the_specs_terms(git_repo: GitRepo) -> None:
    """Probes, scaling, volumes, security context, init containers and pod settings are the spec's
    too: a change to one is named with its field and located, not only seen in the manifests."""
    edits = {
        "initialDelaySeconds: 10\n      liveness": "initialDelaySeconds: 15\n      liveness",
        "maxReplicas: 6": "maxReplicas: 8",
        "{name: redis-data, mountPath: /data, emptyDir: {}}": "{name: redis-data, mountPath: /var/data, emptyDir: {}}",
        "pod: {terminationGracePeriodSeconds: 5}": "pod: {terminationGracePeriodSeconds: 30}",
        "securityContext: *user\n    resources: {requests: {cpu: 300m":
            "securityContext: {runAsUser: 1001}\n    resources: {requests: {cpu: 300m",
        "cpu: 10m, memory: 16Mi": "cpu: 20m, memory: 16Mi",
        'env: {USERS: "10", RATE: "1"}': 'env: {USERS: "10", RATE: "1", TOKEN: {secretKeyRef: {name: load, key: token}}}',
    }
    changed = BOUTIQUE
    for old, new in edits.items():
        assert changed.count(old) == 1, old
        changed = changed.replace(old, new)
    a = git_repo.commit_file("mesh.yaml", BOUTIQUE, "boutique")
    b = git_repo.commit_file("mesh.yaml", changed, "workloads")
    code, report = diff_json(git_repo, a, b)
    assert code == EXIT_CHANGED
    found = {(c["subject"], c["field"]): (c["old"], c["new"], c["newPosition"]) for c in report["specChanges"]}
    expected = {
        ("service frontend", "probes.readiness.initialDelaySeconds"): (10, 15, "initialDelaySeconds: 15"),
        ("service frontend", "autoscaling.maxReplicas"): (6, 8, "maxReplicas: 8"),
        ("service redis-cart", "volumes.redis-data.mountPath"): ("/data", "/var/data", "mountPath: /var/data"),
        ("service loadgenerator", "pod.terminationGracePeriodSeconds"): (5, 30, "terminationGracePeriodSeconds: 30"),
        ("service loadgenerator", "securityContext.runAsUser"): (1000, 1001, "runAsUser: 1001"),
        ("service loadgenerator", "initContainers.frontend-check.resources.requests.cpu"):
            ("10m", "20m", "cpu: 20m"),
        ("service loadgenerator", "env.TOKEN"): (None, "secretKeyRef load/token", "TOKEN: {secretKeyRef"),
    }
    for key, (old, new, written) in expected.items():
        assert key in found, (key, sorted(found))
        was, now, position = found[key]
        assert (was, now) == (old, new)
        line = changed.splitlines()[position["line"] - 1]
        # located at the changed key in the new revision
        assert written in line, (key, line)
    # the loadgenerator no longer shares *user: group and fsGroup fall back to their defaults
    assert found[("service loadgenerator", "securityContext.runAsGroup")][:2] == (1000, 65532)
    assert found[("service loadgenerator", "securityContext.fsGroup")][:2] == (1000, None)
    assert set(found) - set(expected) == {("service loadgenerator", "securityContext.runAsGroup"),
                                          ("service loadgenerator", "securityContext.fsGroup")}
