"""Incremental plans: a new bundle planned against the previous one (known live) reads only what differs.

Counted in the API double's request log: no LIST, a GET per object of the changed files, and the
same writes as a full plan would make. What the incremental plan does not see (an unchanged object
deleted or edited by someone else) is the next full plan's (drift pass's) to correct.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from meshc.bundle import Bundle
from meshc.pipeline import BuildOptions
from meshc.sync.delta import file_delta
from meshc.sync.directory import DirectoryTarget
from meshc.sync.engine import PruneRefused, sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import Action, Change, Interrupted, Plan
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.server import RequestRecord
from tests.support.etcd import EtcdServer
from tests.sync.specs import NAMESPACE, PREFIX, bundle_of, chain_spec, service_name
from tests.sync.test_etcd import stored_key
from tests.sync.test_kubernetes import kind_of, object_name, service_objects

pytestmark = pytest.mark.timeout(120)
SERVICES = 30


def is_list(record: RequestRecord) -> bool:
    return "labelSelector" in record.query or record.path.rstrip("/").split("/")[-1] in (
        "namespaces", "serviceaccounts", "configmaps", "services", "deployments")


def content(plan: Plan) -> set[tuple[Action, str]]:
    return {(change.action, change.key) for change in plan.content_writes}


def service_of(name: str) -> str:
    """`svc-007` for the objects `svc-007`, `svc-007-envoy`, `svc-007-v1` ..."""
    return "-".join(name.split("-")[:2])


def test_a_one_service_change_gets_only_that_services_objects_and_writes_what_a_full_plan_would(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    before = bundle_of(chain_spec(SERVICES))
    sync_once(before, [kube_target])
    after = bundle_of(chain_spec(SERVICES, images={"svc-017": "registry.example/svc-017:2.0"}))
    full = kube_target.plan(after)
    kube_api.reset_log()

    report = sync_once(after, [kube_target], previous=before)

    [plan] = report.plans
    assert plan.incremental and report.incremental
    requests = kube_api.requests
    assert not [r for r in requests if is_list(r)], [(r.method, r.path, r.query) for r in requests]
    reads = [r for r in requests if r.method == "GET"]
    assert {f"{kind_of(r)}/{object_name(r)}" for r in reads} == service_objects(kube_api, "svc-017")
    assert [(w.method, kind_of(w), object_name(w)) for w in kube_api.writes()] == [("PATCH", "Deployment", "svc-017")]
    assert content(plan) == content(full) == {(Action.UPDATE, f"apps/v1 Deployment {NAMESPACE}/svc-017")}
    # converged: a full plan of the mesh now finds nothing to change
    assert kube_target.plan(after).empty


def test_a_removed_service_is_pruned_by_the_incremental_plan(kube_api: KubeAPIHandle,
                                                             kube_target: KubernetesTarget) -> None:
    before = bundle_of(chain_spec(6))
    sync_once(before, [kube_target])
    doomed = service_objects(kube_api, "svc-005")
    after = bundle_of(chain_spec(6, drop=frozenset({"svc-005"})))
    full = kube_target.plan(after)
    kube_api.reset_log()

    report = sync_once(after, [kube_target], previous=before)

    [plan] = report.plans
    assert plan.incremental and not plan.empties
    assert content(plan) == content(full)
    assert not [r for r in kube_api.requests if is_list(r)]
    # what was read: the removed service's objects and its caller's (svc-004 lost its upstream)
    assert {service_of(object_name(r)) for r in kube_api.requests if r.method == "GET"} == {"svc-004", "svc-005"}
    deletes = {f"{kind_of(w)}/{object_name(w)}" for w in kube_api.writes() if w.method == "DELETE"}
    assert deletes == doomed
    assert service_objects(kube_api, "svc-005") == set()
    assert {service_of(object_name(w)) for w in kube_api.writes() if w.method == "PATCH"} == {"svc-004"}
    assert kube_target.plan(after).empty


def test_an_incremental_prune_is_guarded_like_a_full_one(kube_api: KubeAPIHandle,
                                                         kube_target: KubernetesTarget) -> None:
    before = bundle_of(chain_spec(2))
    sync_once(before, [kube_target])
    renamed = chain_spec(2)
    for entry in renamed["spec"]["services"]:
        entry["name"] = "new-" + entry["name"]
        for upstream in entry.get("upstreams", []):
            upstream["service"] = "new-" + upstream["service"]
    after = bundle_of(renamed)
    smaller = bundle_of(chain_spec(4, drop=frozenset({"svc-002", "svc-003"})))
    kube_api.reset_log()

    with pytest.raises(PruneRefused, match="everything") as refused:
        sync_once(after, [kube_target], previous=before, prune_limit=100)
    assert refused.value.plans[0].incremental and refused.value.plans[0].empties
    assert kube_api.writes() == []

    four = bundle_of(chain_spec(4))
    sync_once(four, [kube_target], allow_prune_all=True)
    kube_api.reset_log()
    with pytest.raises(PruneRefused, match="--prune-limit 5"):
        sync_once(smaller, [kube_target], previous=four, prune_limit=5)
    assert kube_api.writes() == []


def test_an_out_of_band_deletion_of_an_unchanged_object_waits_for_the_next_full_plan(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    before = bundle_of(chain_spec(5))
    sync_once(before, [kube_target])
    client.CoreV1Api(kube_api.api_client()).delete_namespaced_config_map("svc-001-envoy", NAMESPACE)
    after = bundle_of(chain_spec(5, replicas={"svc-003": 2}))

    incremental = sync_once(after, [kube_target], previous=before)

    # the trade-off: svc-001's files did not change, so the incremental plan did not look at it
    assert incremental.plans[0].incremental
    assert all("svc-001" not in key for _, key in content(incremental.plans[0]))
    assert kube_api.store_get("configmaps", "svc-001-envoy", NAMESPACE) is None
    # the drift pass (a full plan of the same bundle) puts it back
    drift = sync_once(after, [kube_target])
    assert not drift.plans[0].incremental
    assert content(drift.plans[0]) == {(Action.CREATE, f"v1 ConfigMap {NAMESPACE}/svc-001-envoy")}
    assert kube_api.store_get("configmaps", "svc-001-envoy", NAMESPACE) is not None


def test_moving_the_namespace_or_a_large_delta_is_planned_in_full(
        kube_api: KubeAPIHandle, kube_target: KubernetesTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    before = bundle_of(chain_spec(3))
    sync_once(before, [kube_target])
    moved = bundle_of(chain_spec(3, namespace="sync-moved"))
    assert not kube_target.plan(moved, previous=before).incremental
    everything = bundle_of(chain_spec(3, images={service_name(i): "registry.example/new:1" for i in range(3)}))
    assert kube_target.plan(everything, previous=before).incremental
    # past INCREMENTAL_MAX_OBJECTS objects one LIST per kind is cheaper than a GET per object
    monkeypatch.setattr("meshc.sync.kubernetes.INCREMENTAL_MAX_OBJECTS", 4)
    assert not kube_target.plan(everything, previous=before).incremental


@pytest.mark.etcd
def test_a_revision_record_naming_another_commit_makes_every_plan_full(
        kube_api: KubeAPIHandle, etcd_server: EtcdServer, kube_target: KubernetesTarget,
        etcd_target: EtcdTarget) -> None:
    before = bundle_of(chain_spec(4), revision="a" * 40)
    targets = [kube_target, etcd_target]
    sync_once(before, targets, revision="a" * 40)
    after = bundle_of(chain_spec(4, replicas={"svc-002": 3}), revision="b" * 40)

    trusted = sync_once(after, targets, revision="b" * 40, previous=before, previous_revision="a" * 40)
    assert [plan.incremental for plan in trusted.plans] == [True, True]   # etcd compared only svc-002's record

    # someone else synced another commit since: the previous bundle is not what is live
    etcd_server.client().put(f"{PREFIX}/revision", "c" * 40)
    later = bundle_of(chain_spec(4, replicas={"svc-002": 4}), revision="d" * 40)
    kube_api.reset_log()
    doubted = sync_once(later, targets, revision="d" * 40, previous=after, previous_revision="b" * 40)

    assert [plan.incremental for plan in doubted.plans] == [False, False]
    assert any(r.method == "GET" and "labelSelector" in r.query for r in kube_api.requests)
    assert etcd_server.client().get(f"{PREFIX}/revision") == [b"d" * 40]


@pytest.mark.etcd
def test_the_recorded_revision_compiled_otherwise_makes_every_plan_full(
        kube_api: KubeAPIHandle, etcd_server: EtcdServer, kube_target: KubernetesTarget,
        etcd_target: EtcdTarget) -> None:
    targets = [kube_target, etcd_target]
    hosted = BuildOptions(envoy_hosts={"svc-001": "10.0.0.9:7000"})   # svc-000 reaches svc-001 there
    sync_once(bundle_of(chain_spec(4), revision="a" * 40, options=hosted), targets, revision="a" * 40)
    # a bundle of the recorded commit, but built with the default options: not what is live
    unhosted = bundle_of(chain_spec(4), revision="a" * 40)
    after = bundle_of(chain_spec(4, replicas={"svc-002": 3}), revision="b" * 40)
    kube_api.reset_log()

    report = sync_once(after, targets, revision="b" * 40, previous=unhosted, previous_revision="a" * 40)

    assert [plan.incremental for plan in report.plans] == [False, False]
    assert any(is_list(r) for r in kube_api.requests)
    assert f"v1 ConfigMap {NAMESPACE}/svc-000-envoy" in {c.key for c in report.plans[0].content_writes}
    assert kube_target.plan(after).empty                    # everything `after` compiled to is live

    # no digest recorded (an etcd written by a meshc that kept none): not a confirmation either
    etcd_server.client().delete(f"{PREFIX}/revision-manifest")
    later = bundle_of(chain_spec(4, replicas={"svc-002": 4}), revision="c" * 40)
    doubted = sync_once(later, targets, revision="c" * 40, previous=after, previous_revision="b" * 40)
    assert [plan.incremental for plan in doubted.plans] == [False, False]
    # the apply recorded it: the next commit is planned against `later` again
    last = bundle_of(chain_spec(4, replicas={"svc-002": 5}), revision="d" * 40)
    trusted = sync_once(last, targets, revision="d" * 40, previous=later, previous_revision="c" * 40)
    assert [plan.incremental for plan in trusted.plans] == [True, True]


@pytest.mark.etcd
def test_etcd_reads_only_the_records_that_differ_from_the_applied_bundle_or_were_touched_since(
        etcd_server: EtcdServer, etcd_target: EtcdTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    before = bundle_of(chain_spec(6), revision="a" * 40)
    sync_once(before, [etcd_target], revision="a" * 40)
    edited = stored_key(etcd_server, f"{PREFIX}/services/svc-000")
    etcd_server.client().put(edited, "edited by hand")            # records the next commit leaves as they were
    etcd_server.client().delete(stored_key(etcd_server, f"{PREFIX}/services/svc-005"))
    after = bundle_of(chain_spec(6, replicas={"svc-001": 2}, drop=frozenset({"svc-004"})), revision="b" * 40)
    records = {(Action.UPDATE, f"{PREFIX}/services/svc-001"), (Action.UPDATE, f"{PREFIX}/services/svc-003"),
               (Action.DELETE, f"{PREFIX}/services/svc-004"),  # svc-003 no longer calls svc-004
               (Action.UPDATE, f"{PREFIX}/services/svc-000"), (Action.CREATE, f"{PREFIX}/services/svc-005")}
    requests: list[tuple[str, dict[str, Any]]] = []
    post = etcd_target._post
    monkeypatch.setattr(etcd_target, "_post", lambda path, payload: requests.append((path, payload)) or post(path, payload))

    report = sync_once(after, [etcd_target], revision="b" * 40, previous=before, previous_revision="a" * 40)

    [plan] = report.plans
    assert plan.incremental and content(plan) == records
    assert etcd_server.client().get(edited) == [after.etcd_seed()["kvs"][f"{PREFIX}/services/svc-000"].encode()]
    ranges = [payload for path, payload in requests if path == "/kv/range"]
    assert ranges and all(payload.get("keys_only") for payload in ranges)   # no value read in bulk
    read = {base64.b64decode(op["request_range"]["key"]).decode().rsplit("/", 2)[-2:][-1]
            for path, payload in requests if path == "/kv/txn" for op in payload.get("success", [])
            if "request_range" in op}
    # the bookkeeping, and the records compared: changed by the commit, or written since the apply
    assert {"svc-001", "svc-003", "svc-000"} <= read and not read & {"svc-002", "svc-004", "svc-005"}
    assert read - {"svc-001", "svc-003", "svc-000"} <= {"current", "revision", "revision-manifest",
                                                        *{key.rsplit("/", 1)[-1] for key in requests_ledgers(requests)}}
    assert etcd_target.plan(after, revision="b" * 40).empty    # a full plan finds nothing left to do


def requests_ledgers(requests: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The ledger keys (`<prefix>/written/G`) among the keys read in transactions."""
    keys = [base64.b64decode(op["request_range"]["key"]).decode()
            for path, payload in requests if path == "/kv/txn" for op in payload.get("success", []) if "request_range" in op]
    return [key for key in keys if f"{PREFIX}/written/" in key]


@pytest.mark.etcd
def test_etcd_plans_from_a_whole_read_when_the_revision_it_read_the_keys_at_is_compacted(
        etcd_server: EtcdServer, etcd_target: EtcdTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    before = bundle_of(chain_spec(4), revision="a" * 40)
    sync_once(before, [etcd_target], revision="a" * 40)
    after = bundle_of(chain_spec(4, replicas={"svc-001": 2}), revision="b" * 40)
    values_at = etcd_target._values_at

    def compacted_first(store_revision: int, keys: list[str]) -> dict[str, bytes]:
        # someone writes elsewhere and compacts the history right after the keys were read
        etcd_server.client().put("/elsewhere", "x")
        etcd_server.etcdctl("compaction", str(store_revision + 1))
        return values_at(store_revision, keys)

    monkeypatch.setattr(etcd_target, "_values_at", compacted_first)
    ranges: list[dict[str, Any]] = []
    post = etcd_target._post
    monkeypatch.setattr(etcd_target, "_post", lambda path, payload: (
        ranges.append(payload) if path == "/kv/range" else None) or post(path, payload))

    plan = etcd_target.plan(after, revision="b" * 40, previous=before)

    assert [bool(payload.get("keys_only")) for payload in ranges] == [True, False]   # then the whole prefix
    assert content(plan) == {(Action.UPDATE, f"{PREFIX}/services/svc-001")}
    assert sync_once(after, [etcd_target], revision="b" * 40, previous=before).plans[0].writes
    assert etcd_target.plan(after, revision="b" * 40).empty


def test_the_directory_reads_only_the_files_that_differ(tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "out")
    before = bundle_of(chain_spec(5), revision="a" * 40)
    sync_once(before, [target])
    # a hand edit in a service the next commit does not touch
    edited = target.root / "envoy" / "svc-001" / "cds.yaml"
    edited.write_text("{}")
    after = bundle_of(chain_spec(5, replicas={"svc-003": 2}), revision="b" * 40)

    report = sync_once(after, [target], previous=before)

    [plan] = report.plans
    assert plan.incremental
    compared = {change.key for change in plan.changes if not change.bookkeeping}
    assert compared == {"kubernetes/svc-003.yaml", "etcd/seed.json"}
    assert edited.read_text() == "{}"                       # not seen by the incremental plan
    assert content(plan) == {(Action.UPDATE, "kubernetes/svc-003.yaml"), (Action.UPDATE, "etcd/seed.json")}
    drift = sync_once(after, [target])                      # the next full plan corrects it
    assert not drift.plans[0].incremental
    assert content(drift.plans[0]) == {(Action.UPDATE, "envoy/svc-001/cds.yaml")}
    assert edited.read_bytes() == after.files["envoy/svc-001/cds.yaml"]


def test_the_directory_plans_in_full_when_it_does_not_hold_the_previous_bundle(tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "out")
    first = bundle_of(chain_spec(3), revision="a" * 40)
    second = bundle_of(chain_spec(3, replicas={"svc-000": 2}), revision="b" * 40)
    sync_once(first, [target])

    plan = target.plan(bundle_of(chain_spec(3, replicas={"svc-000": 3}), revision="c" * 40), previous=second)

    assert not plan.incremental and plan.recorded == "a" * 40
    assert {c.key for c in plan.changes if c.action is Action.UNCHANGED} >= {"envoy/svc-001/cds.yaml"}


def test_file_delta_compares_the_manifests_digests() -> None:
    before = bundle_of(chain_spec(4))
    after = bundle_of(chain_spec(4, drop=frozenset({"svc-003"}), replicas={"svc-001": 2}))
    delta = file_delta(before, after)
    assert delta is not None
    assert delta.changed == {"kubernetes/svc-001.yaml", "kubernetes/svc-002.yaml", "kubernetes/kustomization.yaml",
                             "etcd/seed.json", "envoy/svc-002/cds.yaml", "envoy/svc-002/lds.yaml"}
    assert delta.removed == {"kubernetes/svc-003.yaml", "envoy/svc-003/bootstrap.yaml", "envoy/svc-003/cds.yaml",
                             "envoy/svc-003/lds.yaml"}
    assert not delta.added and "manifest.json" not in delta.unchanged
    assert delta.under("kubernetes/").removed == {"kubernetes/svc-003.yaml"}
    assert "envoy/svc-000/cds.yaml" in delta.unchanged and not delta.unchanged & (delta.changed | delta.removed)
    back = file_delta(after, before)                        # the other way round: svc-003's files come back
    assert back is not None and back.added == delta.removed and back.changed == delta.changed and not back.removed
    assert back.unchanged == delta.unchanged
    # a manifest that does not list the bundle's files is not trusted: plan everything
    tampered = Bundle({**after.files, "extra.txt": b"x"})
    assert file_delta(before, tampered) is None


def test_plans_count_bookkeeping_apart() -> None:
    plan = Plan("etcd", (Change(Action.UPDATE, "/p/revision", bookkeeping=True), Change(Action.UNCHANGED, "/p/k")))
    assert plan.empty and plan.writes and plan.bookkeeping_writes == plan.writes and not plan.content_writes


def test_a_full_plan_is_set_aside_between_lists_when_asked(kube_api: KubeAPIHandle,
                                                           kube_target: KubernetesTarget) -> None:
    bundle = bundle_of(chain_spec(3))
    sync_once(bundle, [kube_target])
    kube_api.reset_log()
    answers = iter([False, False, True])    # before the target, before its first LIST, before the second

    with pytest.raises(Interrupted):
        sync_once(bundle_of(chain_spec(3, replicas={"svc-001": 2})), [kube_target], interrupt=lambda: next(answers))

    assert len([r for r in kube_api.requests if "labelSelector" in r.query]) == 1
    assert kube_api.writes() == []
