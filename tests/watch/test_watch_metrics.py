"""The metrics endpoint: every documented metric is served, with values that match what happened."""

from __future__ import annotations

import re

from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.metrics import METRIC_NAMES, MetricsServer, SyncMetrics
from tests.support.gitrepo import GitRepo
from tests.support.httpclient import http_get
from tests.support.ports import poll_until
from tests.watch.harness import watching
from tests.watch.specs import BROKEN_SPEC, SPEC_PATH, mesh_spec


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text format, e.g. sample(t, "meshc_sync_total", 'result="noop"')."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no sample {name}{{{labels}}} in:\n{text}"
    return float(match.group(1))


def test_metrics_endpoint_serves_every_metric(mesh_repo: GitRepo, kube_target: KubernetesTarget,
                                             etcd_target: EtcdTarget) -> None:
    metrics = SyncMetrics()
    with watching(mesh_repo.path, [kube_target, etcd_target], metrics=metrics) as watcher:
        server = MetricsServer(metrics, "127.0.0.1", 0, watcher.watcher.healthy).start()
        try:
            url = "http://{}:{}".format(*server.address)
            first = mesh_repo.head_sha
            watcher.wait("applied", commit=first)
            mesh_repo.commit_file(SPEC_PATH, BROKEN_SPEC, "Break the spec")
            watcher.wait("invalid")
            fixed = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-00": "2.0.0"}), "Fix it")
            applied = watcher.wait("applied", commit=fixed)

            def drift_checked() -> str | None:
                """The metrics once two drift checks wrote nothing (they are spaced by the full
                sync's duration: how many passes that takes depends on the machine)."""
                text = http_get(url + "/metrics").body.decode()
                if sample(text, "meshc_sync_total", 'result="noop"') >= 2 and sample(text, "meshc_sync_writes") == 0:
                    return text
                return None

            text = poll_until(drift_checked, timeout=30, message="no drift check after the fix")
            health = http_get(url + "/healthz")
        finally:
            server.stop()
    for name in METRIC_NAMES:
        assert re.search(rf"^# TYPE {name} ", text, re.MULTILINE), f"{name} missing"
    assert sample(text, "meshc_sync_total", 'result="applied"') == 2
    assert sample(text, "meshc_sync_total", 'result="invalid"') == 1
    assert sample(text, "meshc_sync_total", 'result="noop"') >= 2        # drift checks in between
    assert sample(text, "meshc_sync_total", 'result="failed"') == 0
    assert sample(text, "meshc_sync_total", 'result="refused"') == 0
    assert sample(text, "meshc_leader") == 1
    assert sample(text, "meshc_drifted_objects") == 0
    assert sample(text, "meshc_last_applied_revision_info", f'mesh="demo",revision="{fixed}"') == 1
    applied_at = sample(text, "meshc_last_applied_timestamp_seconds")
    assert 1.7e9 < applied_at <= sample(text, "meshc_last_sync_timestamp_seconds")
    assert sample(text, "meshc_sync_duration_seconds_count") >= 4
    assert sample(text, "meshc_sync_writes") == 0                         # the last pass was a drift check
    total = sample(text, "meshc_writes_total", 'target="kubernetes"') + sample(text, "meshc_writes_total",
                                                                                  'target="etcd"')
    assert total >= applied["writes"] > 0
    assert health.status == 200
