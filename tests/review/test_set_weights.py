"""`meshc set-weights`: only the weight characters change; validated before an atomic write."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from tests.git.history import ROOT, meshc

CANARY = (ROOT / "examples" / "canary" / "mesh.yaml").read_text(encoding="utf-8")
SHOP = (ROOT / "examples" / "shop" / "mesh.yaml").read_text(encoding="utf-8")

ODD = """\
# A spec written every which way: comments, quotes, anchors, flow and block style.
apiVersion: "meshc.dev/v1alpha1"
kind: 'Mesh'
metadata: {name: odd}
spec:
  defaults:
    retries: {attempts: 1, perTryTimeout: 2s, retryOn: [5xx, connect-failure,
              reset]}     # a flow mapping over two lines
  services:
  - name: web
    image: "ghcr.io/acme/web:1"
    port: 8080
    upstreams:
      - service: api
        localPort: 7001
  - name: api   # the API
    image: ghcr.io/acme/api:1
    port: 9000
    versions:
        - name: blue        # current
          weight: &half 50  # anchored
        - name: green
          weight: *half
  - name: one
    image: ghcr.io/acme/one:1
    port: 9100
    versions:
    - name: only
  - name: q
    image: ghcr.io/acme/q:1
    port: 9200
    versions:
    - &qbase {name: a, weight: 50, replicas: 2}
    - <<: *qbase
      name: b
"""


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old line, new line) pairs of a line diff; an inserted line pairs with ''."""
    pairs = []
    matcher = difflib.SequenceMatcher(a=before.splitlines(keepends=True), b=after.splitlines(keepends=True))
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag != "equal":
            old, new = matcher.a[a0:a1], matcher.b[b0:b1]
            pairs += list(zip(old + [""] * (len(new) - len(old)), new + [""] * (len(old) - len(new))))
    return pairs


def spec_file(tmp_path: Path, text: str, name: str = "mesh.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_canary_example_exactly_the_weight_lines_change(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, CANARY)
    result = meshc("set-weights", str(spec), "checkout", "stable=70", "canary=20", "next=10")
    assert result.returncode == 0, result.stderr
    assert "checkout: set stable 80 -> 70, canary 15 -> 20, next 5 -> 10" in result.stderr
    assert changed_lines(CANARY, spec.read_text()) == [
        ("      weight: 80\n", "      weight: 70\n"),
        ("      weight: 15\n", "      weight: 20\n"),
        ("      weight: 5\n", "      weight: 10\n"),
    ]
    assert meshc("validate", str(spec)).returncode == 0


def test_flow_style_versions_keep_their_layout(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, SHOP)
    assert meshc("set-weights", str(spec), "catalog", "v1=50", "v2=50").returncode == 0
    assert changed_lines(SHOP, spec.read_text()) == [
        ("    - {name: v1, image: ghcr.io/acme/catalog:1.0.0, replicas: 3, weight: 90}\n",
         "    - {name: v1, image: ghcr.io/acme/catalog:1.0.0, replicas: 3, weight: 50}\n"),
        ("    - {name: v2, image: ghcr.io/acme/catalog:2.0.0, replicas: 1, weight: 10}\n",
         "    - {name: v2, image: ghcr.io/acme/catalog:2.0.0, replicas: 1, weight: 50}\n"),
    ]


def test_anchor_and_alias_are_edited_where_each_version_reads_its_weight(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, ODD)
    result = meshc("set-weights", str(spec), "api", "blue=70", "green=30")
    assert result.returncode == 0, result.stderr
    assert changed_lines(ODD, spec.read_text()) == [
        ("          weight: &half 50  # anchored\n", "          weight: &half 70  # anchored\n"),
        ("          weight: *half\n", "          weight: 30\n"),
    ]


def test_changing_one_side_of_a_shared_anchor_is_refused(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, ODD)
    result = meshc("set-weights", str(spec), "api", "blue=70")
    assert result.returncode == 1 and "[E405]" in result.stderr
    assert spec.read_text() == ODD


def test_missing_or_merged_weight_is_added_next_to_the_name(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, ODD)
    assert meshc("set-weights", str(spec), "one", "only=100").returncode == 0
    assert changed_lines(ODD, spec.read_text()) == [("", "      weight: 100\n")]
    spec.write_text(ODD)
    result = meshc("set-weights", str(spec), "q", "a=30", "b=70")
    assert result.returncode == 0, result.stderr
    assert changed_lines(ODD, spec.read_text()) == [
        ("    - &qbase {name: a, weight: 50, replicas: 2}\n", "    - &qbase {name: a, weight: 30, replicas: 2}\n"),
        ("", "      weight: 70\n"),
    ]


def test_sum_not_100_is_reported_and_nothing_written(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, CANARY)
    result = meshc("set-weights", str(spec), "checkout", "stable=70", "canary=20")
    assert result.returncode == 1
    assert "version weights of 'checkout' sum to 95, not 100 [E206]" in result.stderr
    assert f"{spec}:" in result.stderr and "was not changed" in result.stderr
    assert spec.read_text() == CANARY


@pytest.mark.parametrize(("args", "code", "message", "exit_code"), [
    (["checkot", "stable=100"], "E401", "service 'checkot' is not in spec.services; did you mean 'checkout'?", 1),
    (["checkout", "beta=100"], "E402", "service 'checkout' has no version 'beta'", 1),
    (["web", "v1=100"], "E403", "service 'web' declares no versions", 1),
    (["checkout", "stable=101"], "E404", "'stable=101' is not VERSION=WEIGHT", 2),
    (["checkout", "stable70"], "E404", "'stable70' is not VERSION=WEIGHT", 2),
    (["checkout", "stable=50", "stable=50"], "E404", "version 'stable' is given twice", 2),
])
def test_errors(tmp_path: Path, args: list[str], code: str, message: str, exit_code: int) -> None:
    spec = spec_file(tmp_path, CANARY)
    result = meshc("set-weights", str(spec), *args)
    assert result.returncode == exit_code
    assert message in result.stderr and f"[{code}]" in result.stderr and "Traceback" not in result.stderr
    assert spec.read_text() == CANARY


def test_external_service_has_no_versions(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, SHOP)
    result = meshc("set-weights", str(spec), "payments", "v1=100")
    assert result.returncode == 1 and "is an external service (static endpoints)" in result.stderr


def test_missing_file_is_an_io_error(tmp_path: Path) -> None:
    result = meshc("set-weights", str(tmp_path / "absent.yaml"), "checkout", "stable=100")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_mode_symlink_crlf_and_bom_survive(tmp_path: Path) -> None:
    text = "\ufeff" + CANARY.replace("\n", "\r\n")
    real = spec_file(tmp_path, text, "real.yaml")
    real.chmod(0o640)
    link = tmp_path / "mesh.yaml"
    link.symlink_to("real.yaml")
    result = meshc("set-weights", str(link), "checkout", "stable=75", "canary=20", "next=5")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and stat.S_IMODE(real.stat().st_mode) == 0o640
    edited = real.read_bytes().decode("utf-8")
    assert edited == text.replace("weight: 80\r\n", "weight: 75\r\n").replace("weight: 15\r\n", "weight: 20\r\n")
    assert sorted(os.listdir(tmp_path)) == ["mesh.yaml", "real.yaml"]   # no temporary file left behind


def test_dry_run_prints_a_diff_and_writes_nothing(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, CANARY)
    before = spec.stat().st_mtime_ns
    result = meshc("set-weights", "--dry-run", str(spec), "checkout", "stable=90", "canary=5", "next=5")
    assert result.returncode == 0
    assert "-      weight: 80\n+      weight: 90\n" in result.stdout
    assert "-      weight: 15\n+      weight: 5\n" in result.stdout
    assert spec.read_text() == CANARY and spec.stat().st_mtime_ns == before


def test_same_weights_leave_the_file_alone(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, CANARY)
    before = spec.stat().st_ino
    result = meshc("set-weights", str(spec), "checkout", "stable=80", "canary=15", "next=5")
    assert result.returncode == 0 and "unchanged" in result.stderr
    assert spec.stat().st_ino == before


def test_json_output_reports_the_changes(tmp_path: Path) -> None:
    import json

    spec = spec_file(tmp_path, CANARY)
    result = meshc("set-weights", "--format", "json", str(spec), "checkout", "stable=70", "canary=25", "next=5")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] is True and report["service"] == "checkout"
    assert report["changes"][:2] == [{"version": "stable", "old": 80, "new": 70},
                                     {"version": "canary", "old": 15, "new": 25}]
