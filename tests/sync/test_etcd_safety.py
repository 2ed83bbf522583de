"""etcd safety against a real etcd: foreign keys are never deleted, transactions are bounded by
count and bytes (etcd's own refusal surfaced), an apply cut short leaves readers on the old
commit and its debris is removed by the next sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshc.sync.engine import sync_once
from meshc.sync.etcd import EtcdTarget, Op
from meshc.sync.etcd_layout import read_snapshot
from meshc.sync.target import ApplyResult, PermanentError, TransientError
from tests.support.etcd import EtcdServer
from tests.sync.specs import PREFIX, bundle_of, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]
FOREIGN = {f"{PREFIX}/services/billing": "another tool's record", f"{PREFIX}/backup/x": "a backup",
           f"{PREFIX}/generations/000000000001/services/svc-000": "not in any ledger"}


def raw_keys(etcd: EtcdServer) -> dict[str, str]:
    return {meta["key"].decode(): value.decode() for value, meta in etcd.client().get_prefix(PREFIX + "/")}


def meshc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_keys_meshc_did_not_write_are_reported_and_never_deleted(tmp_path: Path, etcd_server: EtcdServer) -> None:
    client = etcd_server.client()
    for key, value in FOREIGN.items():
        client.put(key, value)
    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(chain_spec(3), sort_keys=False))
    first = meshc("apply", str(spec), "--etcd", etcd_server.url)
    assert first.returncode == 0, first.stderr
    spec.write_text(yaml.safe_dump(chain_spec(3, drop=frozenset({"svc-002"})), sort_keys=False))

    second = meshc("apply", str(spec), "--etcd", etcd_server.url)

    assert second.returncode == 0, second.stderr
    assert f"- deleted   {PREFIX}/services/svc-002" in second.stdout     # meshc's own record, pruned
    assert "billing" not in second.stdout and "backup" not in second.stdout
    assert f"3 keys under {PREFIX}/ that meshc did not write, left alone" in second.stderr
    live = raw_keys(etcd_server)
    assert {key: live.get(key) for key in FOREIGN} == FOREIGN
    assert set(read_snapshot(client, PREFIX).records) == {f"{PREFIX}/services/svc-000", f"{PREFIX}/services/svc-001"}


def test_transactions_are_bounded_by_bytes_and_etcds_own_refusal_is_shown(tmp_path: Path) -> None:
    bundle = bundle_of(chain_spec(60))     # ~41 KB of records
    with EtcdServer(tmp_path / "etcd", extra_args=["--max-request-bytes", "16384"]) as etcd:
        too_big = EtcdTarget(etcd.url, max_txn_bytes=1024 * 1024)
        with pytest.raises(PermanentError, match="etcdserver: request is too large"):
            sync_once(bundle, [too_big], revision="a" * 40)
        too_big.close()
        assert read_snapshot(etcd.client(), PREFIX).records == {}     # nothing readable was half-written

        bounded = EtcdTarget(etcd.url, max_txn_bytes=12 * 1024)
        report = sync_once(bundle, [bounded], revision="a" * 40)
        bounded.close()

        assert report.write_requests >= 2 + 4     # reserve + switch + at least 41 KB / 12 KB batches
        snapshot = read_snapshot(etcd.client(), PREFIX)
        assert snapshot.revision == "a" * 40
        assert {k: v.decode() for k, v in snapshot.records.items()} == bundle.etcd_seed()["kvs"]


def test_one_record_bigger_than_a_transaction_is_refused_before_anything_is_written(
        etcd_server: EtcdServer) -> None:
    target = EtcdTarget(etcd_server.url, max_txn_bytes=4096)
    with pytest.raises(PermanentError, match="more than one transaction may carry"):
        target.batches([Op("/k", b"x" * 5000)], {})
    before = int(etcd_server.client().status()["header"]["revision"])
    wide = chain_spec(30)
    wide["spec"]["services"][0]["upstreams"] = [{"service": f"svc-{i:03d}", "localPort": 9000 + i}
                                                for i in range(1, 30)]
    with pytest.raises(PermanentError, match=f"the record {PREFIX}/services/svc-000 is [0-9]+ bytes; one transaction .*; nothing was written"):
        sync_once(bundle_of(wide), [target], revision="a" * 40)
    target.close()
    assert int(etcd_server.client().status()["header"]["revision"]) == before


class _CrashingTarget(EtcdTarget):
    """Stops (as if the process died) after `survive` transactions."""

    def __init__(self, url: str, survive: int) -> None:
        super().__init__(url, max_txn_ops=8)
        self.survive = survive

    def txn(self, compares: dict[str, int], ops: list[Op], result: ApplyResult) -> int:  # type: ignore[override]
        if self.survive == 0:
            raise TransientError("etcd at test: the process died here")
        self.survive -= 1
        return super().txn(compares, ops, result)


@pytest.mark.parametrize("survive", [1, 2, 3, 4])
def test_an_apply_cut_short_leaves_readers_on_the_old_commit_and_the_next_sync_cleans_up(
        etcd_server: EtcdServer, survive: int) -> None:
    old = bundle_of(chain_spec(20))
    new = bundle_of(chain_spec(20, replicas={f"svc-{i:03d}": 2 for i in range(20)}))   # too big for one txn
    sync_once(old, [EtcdTarget(etcd_server.url, max_txn_ops=8)], revision="a" * 40)
    before = read_snapshot(etcd_server.client(), PREFIX)

    with pytest.raises(TransientError):
        sync_once(new, [_CrashingTarget(etcd_server.url, survive)], revision="b" * 40)

    after = read_snapshot(etcd_server.client(), PREFIX)
    assert (after.revision, after.records) == (before.revision, before.records)   # reserve + batches: invisible
    target = EtcdTarget(etcd_server.url, max_txn_ops=8)
    plan = target.plan(new, revision="b" * 40)
    assert any(c.bookkeeping and "unfinished apply" in c.detail for c in plan.changes)
    sync_once(new, [target], revision="b" * 40)
    final = read_snapshot(etcd_server.client(), PREFIX)
    assert final.revision == "b" * 40
    assert {k: v.decode() for k, v in final.records.items()} == new.etcd_seed()["kvs"]
    # nothing left but the generation readers read, its ledger, the pointer and the revision record
    expected = {f"{PREFIX}/current", f"{PREFIX}/revision", f"{PREFIX}/revision-manifest",
                f"{PREFIX}/written/{final.generation}"}
    expected |= {f"{PREFIX}/generations/{final.generation}/services/svc-{i:03d}" for i in range(20)}
    assert set(raw_keys(etcd_server)) == expected


def test_a_key_someone_put_into_an_old_generation_survives_its_removal(etcd_server: EtcdServer) -> None:
    target = EtcdTarget(etcd_server.url, max_txn_ops=8)
    sync_once(bundle_of(chain_spec(10)), [target], revision="a" * 40)
    old = read_snapshot(etcd_server.client(), PREFIX).generation
    intruder = f"{PREFIX}/generations/{old}/services/someone-elses"
    etcd_server.client().put(intruder, "theirs")

    report = sync_once(bundle_of(chain_spec(10, replicas={f"svc-{i:03d}": 3 for i in range(10)})), [target],
                       revision="b" * 40)
    target.close()

    assert read_snapshot(etcd_server.client(), PREFIX).generation != old
    left = {key for key in raw_keys(etcd_server) if key.startswith(f"{PREFIX}/generations/{old}/")}
    assert left == {intruder}                              # meshc's records of the old generation are gone
    assert any(intruder in note for note in report.plans[0].notes)


def test_an_old_generation_holding_only_meshcs_keys_goes_in_one_transaction(etcd_server: EtcdServer) -> None:
    target = EtcdTarget(etcd_server.url, max_txn_ops=8)
    sync_once(bundle_of(chain_spec(20)), [target], revision="a" * 40)

    report = sync_once(bundle_of(chain_spec(20, replicas={f"svc-{i:03d}": 3 for i in range(20)})), [target],
                       revision="b" * 40)
    target.close()

    # reserve + 3 batches of 8 + switch + one transaction removing the old generation and its ledger
    assert report.write_requests == 1 + 3 + 1 + 1
    assert all(key.startswith(f"{PREFIX}/generations/{read_snapshot(etcd_server.client(), PREFIX).generation}/")
               for key in raw_keys(etcd_server) if "/generations/" in key)
