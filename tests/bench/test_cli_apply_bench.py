"""bench/sync/cli_apply at a size that runs in seconds: every mode applies its commit, and the
summary holds what docs/performance.md reports (medians, paired ratios, requests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.sync import cli_apply

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(300)]
ROOT = Path(__file__).parents[2]


def test_every_mode_applies_one_service_without_listing(tmp_path: Path) -> None:
    out = tmp_path / "cli-apply.json"

    assert cli_apply.main(["--services", "12", "--rounds", "1", "--plan-first", "--baseline", str(ROOT),
                           "--json", str(out)]) == 0

    summary = json.loads(out.read_text())["summary"]
    for mode in ("incremental", "planned", "cold", "baseline"):
        assert summary[f"{mode}_lists"] == [0], mode            # planned against the applied commit
        assert summary[f"{mode}_writes"] == [1], mode           # the one Deployment whose image changed
        assert summary[f"{mode}_s"] > 0 and summary[f"{mode}_cpu_s"] > 0
    assert summary["full_lists"][0] > 0
    assert {"incremental_paired_cpu_ratio_to_baseline", "planned_paired_cpu_ratio_to_baseline",
            "cold_paired_cpu_ratio_to_baseline", "paired_ratio_to_full"} <= summary.keys()
