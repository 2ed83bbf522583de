"""The etcd target against a real etcd: guarded transactions, zero-write no-ops, prune, concurrent writers, outages."""

from __future__ import annotations

import json

import pytest

from meshc.bundle import Bundle
from meshc.sync.engine import PruneRefused, sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.etcd_layout import read_snapshot, record_key, relative_key
from meshc.sync.target import Action, ApplyResult, Plan, StalePlan, TransientError
from tests.support.etcd import EtcdServer
from tests.sync.specs import PREFIX, bundle_of, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]
REVISION_KEY = f"{PREFIX}/revision"
MANIFEST_KEY = f"{PREFIX}/revision-manifest"     # the digest of the bundle the revision was compiled to


def store_revision(etcd: EtcdServer) -> int:
    """etcd's global revision: it moves with every write, so equal numbers mean nothing was written."""
    answer = etcd.client().post(etcd.client().get_url("/kv/range"), json={"key": "AA=="})
    return int(answer["header"]["revision"])


def live_keys(etcd: EtcdServer) -> dict[str, str]:
    """What a reader sees (read the documented way): the records by their seed key, and the revision."""
    snapshot = read_snapshot(etcd.client(), PREFIX)
    keys = {key: value.decode() for key, value in snapshot.records.items()}
    if snapshot.revision is not None:
        keys[REVISION_KEY] = snapshot.revision
    return keys


def raw_keys(etcd: EtcdServer) -> dict[str, str]:
    """Every key under the prefix, as stored."""
    return {meta["key"].decode(): value.decode() for value, meta in etcd.client().get_prefix(PREFIX + "/")}


def stored_key(etcd: EtcdServer, seed_key: str) -> str:
    """Where the record a reader reads as `seed_key` is stored now."""
    generation = read_snapshot(etcd.client(), PREFIX).generation
    assert generation is not None
    return record_key(PREFIX, generation, relative_key(PREFIX, seed_key))


def test_first_sync_puts_every_record_and_the_revision_in_one_transaction(
        etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    bundle = bundle_of(chain_spec(3), revision="a" * 40)
    before = store_revision(etcd_server)

    report = sync_once(bundle, [etcd_target], revision="a" * 40)

    assert report.write_requests == 1
    assert store_revision(etcd_server) == before + 1     # one transaction = one revision
    keys = live_keys(etcd_server)
    assert keys.pop(REVISION_KEY) == "a" * 40
    assert keys == bundle.etcd_seed()["kvs"]


def test_a_new_commit_without_changes_writes_one_transaction_setting_only_the_revision(
        etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    sync_once(bundle_of(chain_spec(3)), [etcd_target], revision="a" * 40)
    before, old = store_revision(etcd_server), live_keys(etcd_server)

    report = sync_once(bundle_of(chain_spec(3)), [etcd_target], revision="b" * 40)

    assert report.write_requests == 1 and not report.changed
    assert store_revision(etcd_server) == before + 1      # exactly one transaction
    new = live_keys(etcd_server)
    assert {key for key in new.keys() | old.keys() if new.get(key) != old.get(key)} == {REVISION_KEY}
    assert new[REVISION_KEY] == "b" * 40                   # the commit that is live now
    assert [(target, change.key) for target, change in report.recorded] == [("etcd", REVISION_KEY)]


def test_syncing_the_recorded_commit_again_writes_nothing(etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    sync_once(bundle_of(chain_spec(3)), [etcd_target], revision="b" * 40)
    before = store_revision(etcd_server)

    report = sync_once(bundle_of(chain_spec(3)), [etcd_target], revision="b" * 40)

    assert report.write_requests == 0 and report.results == [] and not report.changed
    assert store_revision(etcd_server) == before


def test_one_service_change_in_100_service_mesh_writes_its_key_and_the_revision(
        etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    sync_once(bundle_of(chain_spec(100)), [etcd_target], revision="a" * 40)
    before = store_revision(etcd_server)
    old, raw_before = live_keys(etcd_server), raw_keys(etcd_server)

    report = sync_once(bundle_of(chain_spec(100, replicas={"svc-042": 3})), [etcd_target], revision="c" * 40)

    assert store_revision(etcd_server) == before + 1
    [change] = report.plans[0].content_writes
    assert (change.action, change.key, change.detail) == (Action.UPDATE, f"{PREFIX}/services/svc-042", "versions")
    new = live_keys(etcd_server)
    assert {k for k in new if new[k] != old.get(k)} == {f"{PREFIX}/services/svc-042", REVISION_KEY}
    assert {k for k, v in raw_keys(etcd_server).items() if v != raw_before.get(k)} == {
        stored_key(etcd_server, f"{PREFIX}/services/svc-042"), REVISION_KEY, MANIFEST_KEY}   # in place: nothing else
    assert new[REVISION_KEY] == "c" * 40
    assert json.loads(new[f"{PREFIX}/services/svc-042"])["versions"][0]["replicas"] == 3


def test_removed_service_key_is_deleted_and_other_keys_are_left_alone(
        etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    etcd_server.client().put(f"{PREFIX}/locks/watch", "someone else's")
    sync_once(bundle_of(chain_spec(4)), [etcd_target], revision="a" * 40)

    report = sync_once(bundle_of(chain_spec(4, drop=frozenset({"svc-002"}))), [etcd_target], revision="b" * 40)

    assert [c.key for c in report.plans[0].deletes] == [f"{PREFIX}/services/svc-002"]
    keys = live_keys(etcd_server)
    assert f"{PREFIX}/services/svc-002" not in keys
    assert raw_keys(etcd_server)[f"{PREFIX}/locks/watch"] == "someone else's"
    assert keys[REVISION_KEY] == "b" * 40
    assert any(f"{PREFIX}/locks/watch" in note for note in report.plans[0].notes)


def test_deleting_every_record_is_refused(etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [etcd_target])
    before = store_revision(etcd_server)
    renamed = chain_spec(1)
    renamed["spec"]["services"][0]["name"] = "brand-new"

    with pytest.raises(PruneRefused):
        sync_once(bundle_of(renamed), [etcd_target])
    assert store_revision(etcd_server) == before


class _RacedEtcdTarget(EtcdTarget):
    """Lets a concurrent writer act between this target's plan and its (first) apply."""

    def __init__(self, url: str, race: object) -> None:
        super().__init__(url)
        self.race = race
        self.applies = 0

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        self.applies += 1
        if self.applies == 1:
            self.race()  # type: ignore[operator]
        return super().apply(plan, bundle)


def test_concurrent_writer_makes_the_transaction_fail_then_replan_converges(etcd_server: EtcdServer) -> None:
    sync_once(bundle_of(chain_spec(3)), [EtcdTarget(etcd_server.url)], revision="a" * 40)
    client = etcd_server.client()
    changed = bundle_of(chain_spec(3, replicas={"svc-001": 2}))

    rival_key = stored_key(etcd_server, f"{PREFIX}/services/svc-001")

    def rival_commit() -> None:
        client.put(REVISION_KEY, "rival")
        client.put(rival_key, "rival record")

    target = _RacedEtcdTarget(etcd_server.url, rival_commit)
    report = sync_once(changed, [target], revision="b" * 40)

    assert report.replans == 1 and target.applies == 2
    keys = live_keys(etcd_server)
    assert keys[REVISION_KEY] == "b" * 40
    assert keys[f"{PREFIX}/services/svc-001"] == changed.etcd_seed()["kvs"][f"{PREFIX}/services/svc-001"]
    # the second plan saw the rival's record (it planned against it, rather than writing blind)
    assert any(c.key == REVISION_KEY and "rival" in c.detail for c in report.plans[0].changes)


def test_stale_plan_is_never_applied(etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [etcd_target], revision="a" * 40)
    changed = bundle_of(chain_spec(2, replicas={"svc-000": 4}))
    plan = etcd_target.plan(changed, revision="b" * 40)
    etcd_server.client().put(REVISION_KEY, "rival")
    before = store_revision(etcd_server)

    with pytest.raises(StalePlan):
        etcd_target.apply(plan, changed)

    assert store_revision(etcd_server) == before
    assert live_keys(etcd_server)[REVISION_KEY] == "rival"


def test_big_syncs_are_split_into_guarded_transactions(etcd_server: EtcdServer) -> None:
    target = EtcdTarget(etcd_server.url, max_txn_ops=8)
    bundle = bundle_of(chain_spec(20))

    report = sync_once(bundle, [target], revision="a" * 40)

    # reserve the generation, 20 records in batches of 8, then one transaction switches readers
    assert report.write_requests == 1 + 3 + 1
    keys = live_keys(etcd_server)
    assert keys.pop(REVISION_KEY) == "a" * 40
    assert keys == bundle.etcd_seed()["kvs"]


def test_etcd_down_is_transient_and_the_next_sync_converges(etcd_server: EtcdServer, etcd_target: EtcdTarget) -> None:
    bundle = bundle_of(chain_spec(3))
    etcd_server.stop()
    with pytest.raises(TransientError, match="unavailable"):
        sync_once(bundle, [etcd_target], revision="a" * 40)
    etcd_server.start()

    sync_once(bundle, [etcd_target], revision="a" * 40)

    assert live_keys(etcd_server)[REVISION_KEY] == "a" * 40


def test_a_plan_of_an_unchanged_etcd_is_remembered_but_any_write_makes_it_read_again(etcd_server: EtcdServer) -> None:
    bundle = bundle_of(chain_spec(3))
    target = EtcdTarget(etcd_server.url)
    sync_once(bundle, [target], revision="r1")
    first = target.plan(bundle, revision="r1")
    assert first.writes == ()
    assert target.plan(bundle, revision="r1") is first      # etcd did not move: nothing re-read
    key = stored_key(etcd_server, next(iter(bundle.etcd_seed()["kvs"])))
    etcd_server.client().put(key, "edited by hand")
    again = target.plan(bundle, revision="r1")
    assert [c.action for c in again.writes] == [Action.UPDATE]
    assert target.plan(bundle_of(chain_spec(3)), revision="r1") is not first   # another bundle: planned
