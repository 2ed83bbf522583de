"""The etcd target: the bundle's seed records under the mesh prefix, switched in one guarded
transaction so that a reader never sees records of two commits (layout: etcd_layout.py).

A change that fits in one transaction (etcd's --max-txn-ops, 128 by default, and a byte budget
under its --max-request-bytes, 1.5 MiB by default) is written in place into the generation
readers read, together with `<prefix>/revision`: a one-service commit is one small transaction.
A bigger change (the first sync of a large mesh) is written as a new generation: its ledger is
reserved, its records put in batches bounded by count and bytes, and one small transaction
switches `<prefix>/current` and `<prefix>/revision` to it; the old generation is deleted after.
Every transaction is guarded by compares on what the plan saw (`current`, `revision`, each key it
writes): a concurrent writer makes it fail and the engine plans again; meshc never writes over a
state it did not see, and a writer fenced off mid-way leaves nothing a reader reads.

meshc deletes only keys its ledgers list. Other keys under the prefix (another tool's, another
mesh's nested prefix, records of an older meshc that kept no ledger) are reported, never touched.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from meshc.bundle import Bundle
from meshc.emit.naming import MANIFEST_PATH, NAMESPACE_PATH
from meshc.sync import etcd_client
from meshc.sync import etcd_layout as layout
from meshc.sync.etcd_client import EtcdAccess, b64, display_url
from meshc.sync.rename import DEFAULT_PREFIX_ROOT
from meshc.sync.target import (
    Action, ApplyResult, Change, Interrupt, MeshIdentity, PermanentError, Plan, StalePlan, SyncError,
)

NAME = "etcd"
DEFAULT_MAX_TXN_OPS = 128               # etcd's --max-txn-ops default
DEFAULT_MAX_TXN_BYTES = 1024 * 1024     # under etcd's --max-request-bytes default (1.5 MiB), with room
DEFAULT_TIMEOUT = 10.0
_OP_OVERHEAD = 32                       # protobuf framing per operation or compare, generously
FOREIGN_SHOWN = 5

__all__ = ["DEFAULT_MAX_TXN_BYTES", "DEFAULT_MAX_TXN_OPS", "EtcdTarget", "display_url"]


@dataclass(frozen=True)
class Op:
    """One put or delete of a transaction."""

    key: str
    value: bytes | None = None          # None: delete
    range_end: str | None = None        # a delete of every key in [key, range_end)

    @property
    def size(self) -> int:
        return len(self.key.encode()) + len(self.value or b"") + _OP_OVERHEAD

    def request(self) -> dict[str, Any]:
        if self.range_end is not None:
            return {"request_delete_range": {"key": b64(self.key.encode()), "range_end": b64(self.range_end.encode())}}
        if self.value is None:
            return {"request_delete_range": {"key": b64(self.key.encode())}}
        return {"request_put": {"key": b64(self.key.encode()), "value": b64(self.value)}}


_COMPACTED = "required revision has been compacted"     # etcd's refusal of a read at a revision it dropped


class _Compacted(Exception):
    """A read at the revision of an earlier read was refused: etcd compacted that revision away."""


class EtcdTarget:
    """Records of one mesh in etcd, through the v3 HTTP gateway (etcd3gw)."""

    name = NAME

    def __init__(self, url: str | EtcdAccess, *, timeout: float = DEFAULT_TIMEOUT,
                 max_txn_ops: int = DEFAULT_MAX_TXN_OPS, max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES) -> None:
        self.access = url if isinstance(url, EtcdAccess) else EtcdAccess(url, timeout=timeout)
        self.url = self.access.display
        self.max_txn_ops = max(4, max_txn_ops)
        self.max_txn_bytes = max(4096, max_txn_bytes)
        self._client = etcd_client.open_client(self.access)
        # The last plan that found nothing to write, with the bundle, revision and etcd store
        # revision it was made for: while etcd's revision has not moved, nothing in it changed.
        self._unchanged: tuple[Bundle, str | None, int, Plan] | None = None

    def __repr__(self) -> str:
        return f"EtcdTarget({self.url!r})"

    # ---- plan -------------------------------------------------------------------------------------

    def plan(self, bundle: Bundle, *, revision: str | None = None, previous: Bundle | None = None,
             interrupt: Interrupt | None = None) -> Plan:
        seed = bundle.etcd_seed()
        prefix = str(seed["prefix"]).rstrip("/")
        if not prefix.strip("/"):
            raise PermanentError("refusing to sync etcd prefix '/': meshc needs a prefix of its own "
                                 "(spec.etcd.prefix, default /meshc/<metadata.name>)")
        unchanged = self._unchanged
        if unchanged is not None and unchanged[0] is bundle and unchanged[1] == revision \
                and self._store_revision(prefix) == unchanged[2]:
            plan = unchanged[3]     # a drift check of an idle etcd: one count-only request
        else:
            plan = self._plan(bundle, prefix, seed, revision, previous)
            state = plan.context["state"]
            # only a full plan stands for the whole prefix in a later drift check
            self._unchanged = (bundle, revision, state.store_revision, plan) if not (
                plan.writes or plan.incremental) else None
        held = plan.context.get("holds") if plan.context.get("previous") is previous else None
        if previous is not None and not (held if held is not None else _holds(plan.context["state"], previous)):
            return replace(plan, contradicts_previous=True)
        return plan

    def _store_revision(self, prefix: str) -> int:
        """etcd's current revision (it moves with every write anywhere in the store)."""
        answer = self._post("/kv/range", {**layout.range_request(prefix), "count_only": True})
        return int(answer.get("header", {}).get("revision", 0))

    def _plan(self, bundle: Bundle, prefix: str, seed: dict[str, Any], revision: str | None,
              previous: Bundle | None = None) -> Plan:
        desired = _desired(prefix, seed)
        self._check_sizes(prefix, desired)
        if previous is not None:
            # Against the bundle the prefix records as applied, the plan reads the keys, the
            # bookkeeping and the records it compares; a prefix that records another bundle, or
            # one whose history etcd compacted between two reads, is read whole.
            try:
                state = self.read_state(prefix, sparse=True)
                if _holds(state, previous) and state.generation is not None:
                    return self._plan_state(bundle, state, desired, revision, previous)
            except _Compacted:
                pass
        return self._plan_state(bundle, self.read_state(prefix), desired, revision, previous)

    def _plan_state(self, bundle: Bundle, state: layout.PrefixState, desired: dict[str, bytes],
                    revision: str | None, previous: Bundle | None) -> Plan:
        prefix = state.prefix
        holds = previous is not None and _holds(state, previous)
        before = _desired(prefix, previous.etcd_seed()) if previous is not None and holds \
            and state.generation is not None else None
        changes, gone, listed = _record_changes(state, desired, before)
        stamp = revision or str((bundle.manifest.get("source") or {}).get("digest") or "")
        revision_key = layout.revision_key(prefix)
        digest = manifest_digest(bundle)
        changes.append(_revision_change(revision_key, stamp, state.value(revision_key), digest,
                                        state.value(layout.revision_manifest_key(prefix))))
        changes += [_stale_change(state, generation) for generation in state.stale_generations()]
        recorded = state.value(revision_key)
        mesh, namespace = str(bundle.manifest.get("mesh") or ""), _namespace(bundle)
        pointer = state.pointer
        renamed = (MeshIdentity(pointer.mesh or "", pointer.namespace or "", prefix),) if (
            pointer is not None and pointer.mesh is not None and (pointer.mesh, pointer.namespace) != (mesh, namespace)
        ) else ()
        return Plan(NAME, tuple(changes), revision=revision, state_token=str(state.store_revision),
                    empties=bool(gone) and len(gone) == listed, notes=_foreign_notes(state), applied_meshes=renamed,
                    incremental=before is not None,
                    recorded=recorded.decode(errors="replace") if recorded is not None else "",
                    context={"state": state, "desired": desired, "stamp": stamp.encode(), "manifest": digest,
                             "mesh": mesh, "namespace": namespace, "previous": previous, "holds": holds})

    def removal_plan(self, old: MeshIdentity, new: MeshIdentity) -> Plan | None:
        """Deleting what meshc wrote for the mesh `old` under its own prefix (another than the new
        mesh's; a shared prefix is rewritten by the new mesh's plan). None when `old`'s prefix
        holds nothing meshc wrote for that mesh."""
        prefix = (old.prefix or f"{DEFAULT_PREFIX_ROOT}/{old.name}").rstrip("/")
        if not prefix.strip("/") or prefix == (new.prefix or "").rstrip("/"):
            return None
        state = self.read_state(prefix)
        if state.pointer is None or state.pointer.mesh != old.name:
            return None
        why = f"mesh {old} renamed to {new}"
        changes = [Change(Action.DELETE, key, why) for key in sorted(state.records())]
        changes += [Change(Action.DELETE, key, "the mesh's record", bookkeeping=True)
                    for key in (layout.revision_key(prefix), layout.current_key(prefix)) if key in state.live]
        changes += [_stale_change(state, generation) for generation in state.stale_generations()]
        return Plan(NAME, tuple(changes), notes=(f"prunes the mesh applied as {old} under {prefix}/",),
                    context={"removal": True, "state": state})

    def recorded_revision(self, bundle: Bundle) -> str | None:
        """What `<prefix>/revision` names (one small read); None when unset or unreadable (the
        plan will say why)."""
        return self.recorded_revision_at(str(bundle.etcd_seed().get("prefix") or ""))

    def recorded_revision_at(self, prefix: str) -> str | None:
        """recorded_revision for the mesh whose etcd prefix is `prefix` (known before its bundle is built)."""
        prefix = prefix.rstrip("/")
        try:
            answer = self._post("/kv/range", {"key": b64(layout.revision_key(prefix).encode())})
        except SyncError:
            return None
        kvs = answer.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")).decode(errors="replace") if kvs else None

    def _check_sizes(self, prefix: str, desired: Mapping[str, bytes]) -> None:
        """A record that no transaction can carry is refused before anything is written."""
        generation = layout.generation_name(0)
        for relative, value in sorted(desired.items()):
            op = Op(layout.record_key(prefix, generation, relative), value)
            if op.size + len(layout.current_key(prefix)) + _OP_OVERHEAD > self.max_txn_bytes:
                raise PermanentError(f"etcd: the record {layout.seed_key(prefix, relative)} is {len(value)} bytes; "
                                     f"one transaction carries at most {self.max_txn_bytes} bytes "
                                     "(--etcd-max-txn-bytes, below etcd's --max-request-bytes, 1.5 MiB by default); "
                                     "nothing was written")
        ledger = Op(layout.ledger_key(prefix, generation), layout.encode_ledger(generation, desired))
        if ledger.size + 3 * (len(prefix) + 64) > self.max_txn_bytes:
            raise PermanentError(f"etcd: the list of the mesh's {len(desired)} records is {ledger.size} bytes, more "
                                 f"than one transaction carries ({self.max_txn_bytes} bytes); nothing was written")

    def read_state(self, prefix: str, *, sparse: bool = False) -> layout.PrefixState:
        """Every key under `<prefix>/` at one etcd revision, sorted into meshc's and foreign ones.
        `sparse`: the keys only, then the values of the bookkeeping keys at the same revision;
        any other value is read (at that revision) when first asked for, and raises _Compacted
        when etcd no longer keeps that revision."""
        if not sparse:
            kvs, store_revision = layout.parse_range(self._post("/kv/range", layout.range_request(prefix)))
            return layout.classify(prefix, kvs, store_revision)
        mods, store_revision = layout.parse_keys(self._post("/kv/range", layout.range_request(prefix, keys_only=True)))
        live = layout.Sparse(mods, functools.partial(self._values_at, store_revision))
        live.prefetch(layout.bookkeeping_keys(prefix, mods))
        return layout.classify(prefix, live, store_revision)

    def _values_at(self, store_revision: int, keys: list[str]) -> dict[str, bytes]:
        """The values of `keys` at etcd revision `store_revision`: ranges of one key each, in
        transactions of at most max_txn_ops of them."""
        values: dict[str, bytes] = {}
        for start in range(0, len(keys), self.max_txn_ops):
            ranges = [{"request_range": {"key": b64(key.encode()), "revision": store_revision}}
                      for key in keys[start:start + self.max_txn_ops]]
            try:
                answer = self._post("/kv/txn", {"success": ranges})
            except PermanentError as error:
                if _COMPACTED in str(error):
                    raise _Compacted(str(error)) from None
                raise
            for response in answer.get("responses") or []:
                for kv in (response.get("response_range") or {}).get("kvs") or []:
                    values[base64.b64decode(kv["key"]).decode()] = base64.b64decode(kv.get("value", ""))
        return values

    # ---- apply ------------------------------------------------------------------------------------

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        result = ApplyResult(NAME)
        try:
            if plan.context.get("removal"):
                _remove_mesh(self, plan, result)
            else:
                _Apply(self, plan, result).run()
        except SyncError as error:
            error.partial = result
            raise
        return result

    def txn(self, compares: Mapping[str, int], ops: Sequence[Op], result: ApplyResult,
            created_by: Sequence[tuple[str, str, int]] = ()) -> int:
        """One transaction guarded by `key mod_revision == n` for each compare (and, for each
        `(key, range_end, revision)` of `created_by`, by every key of that range having been
        created at or before `revision`); the etcd revision it made. StalePlan when a compare
        fails (someone else wrote since the plan)."""
        payload = {
            "compare": [{"key": b64(key.encode()), "result": "EQUAL", "target": "MOD", "mod_revision": mod}
                        for key, mod in compares.items()]
            + [{"key": b64(key.encode()), "range_end": b64(end.encode()), "result": "LESS", "target": "CREATE",
                "create_revision": revision + 1} for key, end, revision in created_by],
            "success": [op.request() for op in ops],
        }
        result.write_requests += 1
        answer = self._post("/kv/txn", payload)
        if not answer.get("succeeded"):
            raise StalePlan(f"etcd keys under {_prefix_of(compares)} changed since the plan was made")
        return int(answer.get("header", {}).get("revision", 0))

    def fits(self, compares: Mapping[str, int], ops: Sequence[Op]) -> bool:
        size = sum(op.size for op in ops) + sum(len(key) + _OP_OVERHEAD for key in compares)
        return len(ops) <= self.max_txn_ops and len(compares) <= self.max_txn_ops and size <= self.max_txn_bytes

    def batches(self, ops: Iterable[Op], compares: Mapping[str, int]) -> list[list[Op]]:
        """`ops` in order, cut into transactions of at most max_txn_ops operations and
        max_txn_bytes bytes (with the compares each carries)."""
        budget = self.max_txn_bytes - sum(len(key) + _OP_OVERHEAD for key in compares)
        batches: list[list[Op]] = [[]]
        size = 0
        for op in ops:
            if op.size > budget:
                raise PermanentError(f"etcd: {op.key} is {op.size} bytes, more than one transaction may carry "
                                     f"({self.max_txn_bytes} bytes, --etcd-max-txn-bytes)")
            if len(batches[-1]) >= self.max_txn_ops or size + op.size > budget:
                batches.append([])
                size = 0
            batches[-1].append(op)
            size += op.size
        return [batch for batch in batches if batch]

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return etcd_client.post(self._client, self.access, path, payload)

    def close(self) -> None:
        self._client.session.close()


class _Apply:
    """Carries out one plan: the in-place transaction or the switch to a new generation, then
    the removal of generations no reader reads."""

    def __init__(self, target: EtcdTarget, plan: Plan, result: ApplyResult) -> None:
        self.target, self.plan, self.result = target, plan, result
        context = plan.context
        self.state: layout.PrefixState = context["state"]
        self.desired: Mapping[str, bytes] = context["desired"]
        self.stamp: bytes = context["stamp"]
        self.manifest: bytes | None = context["manifest"]
        self.prefix = self.state.prefix
        self.pointer_key = layout.current_key(self.prefix)
        self.revision_key = layout.revision_key(self.prefix)
        self.manifest_key = layout.revision_manifest_key(self.prefix)
        self.mesh: str = context["mesh"]
        self.namespace: str = context["namespace"]

    def run(self) -> None:
        content = list(self.plan.content_writes)
        stamp = [c for c in self.plan.writes if c.bookkeeping and c.key == self.revision_key]
        stale = [c for c in self.plan.writes if c.bookkeeping and c.key != self.revision_key]
        guard = self.state.mod(self.pointer_key)
        cleanup = list(self.state.stale_generations())
        compares, ops = self._in_place(content, bool(stamp))
        if ops and self.target.fits(compares, ops):
            guard = self.target.txn(compares, ops, self.result)
            self.result.applied += content + stamp
        elif ops:
            guard = self._switch(guard)
            self.result.applied += content + stamp
            if self.state.generation is not None:
                cleanup.append(self.state.generation)
        self._remove_generations(cleanup, guard)
        self.result.applied += stale

    def _in_place(self, content: list[Change], stamp: bool) -> tuple[dict[str, int], list[Op]]:
        """The one transaction that applies the plan to the generation readers read (a new one
        when there is none yet); empty when there is nothing to write."""
        generation = self.state.generation or layout.generation_name(self.state.store_revision)
        compares = {self.pointer_key: self.state.mod(self.pointer_key),
                    self.revision_key: self.state.mod(self.revision_key),
                    self.manifest_key: self.state.mod(self.manifest_key)}
        ops = []
        for change in content:
            relative = layout.relative_key(self.prefix, change.key)
            key = layout.record_key(self.prefix, generation, relative)
            compares[key] = self.state.mod(key)
            ops.append(Op(key, None if change.action is Action.DELETE else self.desired[relative]))
        if self.state.ledgers.get(generation) != frozenset(self.desired):
            ledger = layout.ledger_key(self.prefix, generation)
            compares[ledger] = self.state.mod(ledger)
            ops.append(Op(ledger, layout.encode_ledger(generation, self.desired)))
        pointer = layout.Pointer(generation, None, self.mesh, self.namespace)
        if self.state.pointer != pointer:
            ops.append(Op(self.pointer_key, pointer.encode()))
        if stamp:
            ops += self._stamp()
        return compares, ops

    def _stamp(self) -> list[Op]:
        """The revision record: the revision, and the digest of the manifest it was compiled to
        (deleted for a bundle without one: it would describe another)."""
        return [Op(self.revision_key, self.stamp), Op(self.manifest_key, self.manifest)]

    def _switch(self, guard: int) -> int:
        """Write every record into a new generation, then switch readers to it in one small
        transaction; returns the etcd revision of the switch."""
        new = layout.generation_name(self.state.store_revision)
        reserved = layout.Pointer(self.state.generation, new, *self._old_identity())
        guard = self.target.txn(
            {self.pointer_key: guard, self.revision_key: self.state.mod(self.revision_key),
             self.manifest_key: self.state.mod(self.manifest_key), layout.ledger_key(self.prefix, new): 0},
            [Op(self.pointer_key, reserved.encode()),
             Op(layout.ledger_key(self.prefix, new), layout.encode_ledger(new, self.desired))], self.result)
        records = (Op(layout.record_key(self.prefix, new, rel), value) for rel, value in sorted(self.desired.items()))
        for batch in self.target.batches(records, {self.pointer_key: guard}):
            self.target.txn({self.pointer_key: guard}, batch, self.result)
        switched = layout.Pointer(new, None, self.mesh, self.namespace)
        return self.target.txn({self.pointer_key: guard},
                               [Op(self.pointer_key, switched.encode()), *self._stamp()],
                               self.result)

    def _old_identity(self) -> tuple[str | None, str | None]:
        pointer = self.state.pointer
        return (pointer.mesh, pointer.namespace) if pointer else (self.mesh, self.namespace)

    def _remove_generations(self, generations: Sequence[str], guard: int) -> None:
        """Delete what meshc wrote in generations no reader reads: the keys their ledgers list,
        then the ledgers; each transaction guarded by the pointer staying as it is. A generation
        that holds only what its ledger lists goes in one transaction; one where someone put keys
        of their own goes key by key (theirs stay)."""
        if not generations:
            return
        ops: list[Op] = []
        for generation in generations:
            root = layout.record_key(self.prefix, generation, "")
            if not any(key.startswith(root) for key in self.state.foreign):
                # Everything under the root is in its ledger: one range delete, guarded by nothing
                # having been created there since the plan read it (so nothing foreign either).
                self.target.txn({self.pointer_key: guard},
                                [Op(root, range_end=layout.range_end(root)),
                                 Op(layout.ledger_key(self.prefix, generation))],
                                self.result, created_by=[(root, layout.range_end(root), self.state.store_revision)])
                continue
            ops += [Op(layout.record_key(self.prefix, generation, rel))
                    for rel in sorted(self.state.ledgers.get(generation, frozenset()))]
            ops.append(Op(layout.ledger_key(self.prefix, generation)))
        # A pending generation's writer was fenced off already: the main transaction rewrote
        # `current` without it (or no main transaction was needed, so nothing was pending).
        for batch in self.target.batches(ops, {self.pointer_key: guard}):
            self.target.txn({self.pointer_key: guard}, batch, self.result)


def _remove_mesh(target: EtcdTarget, plan: Plan, result: ApplyResult) -> None:
    """Take a whole mesh off its prefix: first `current` and `revision` in one transaction (readers
    then see no mesh, never part of one), then every key its ledgers list, then the ledgers; each
    later transaction guarded by `current` staying absent."""
    state: layout.PrefixState = plan.context["state"]
    prefix = state.prefix
    pointer, revision = layout.current_key(prefix), layout.revision_key(prefix)
    target.txn({pointer: state.mod(pointer), revision: state.mod(revision)},
               [Op(pointer), Op(revision), Op(layout.revision_manifest_key(prefix))], result)
    ops = [Op(layout.record_key(prefix, generation, relative))
           for generation in sorted(state.ledgers) for relative in sorted(state.ledgers[generation])]
    ops += [Op(layout.ledger_key(prefix, generation)) for generation in sorted(state.ledgers)]
    for batch in target.batches(ops, {pointer: 0}):
        target.txn({pointer: 0}, batch, result)
    result.applied += list(plan.writes)


def _desired(prefix: str, seed: Mapping[str, Any]) -> dict[str, bytes]:
    """The seed's records by their key relative to the prefix (`services/catalog`)."""
    return {layout.relative_key(prefix, str(key)): str(value).encode() for key, value in (seed.get("kvs") or {}).items()}


def _record_changes(state: layout.PrefixState, desired: Mapping[str, bytes],
                    before: Mapping[str, bytes] | None) -> tuple[list[Change], list[str], int]:
    """The changes of the records, the seed keys to delete, and how many records readers read now.
    With `before` (the records of the bundle the prefix records as applied: its manifest digest
    matched), only the records whose value differs from it, or that were written or deleted
    since that apply (their mod revisions say so), are read and compared; the others are as that
    apply left them."""
    prefix = state.prefix
    if before is None:
        live = state.records()
        changes = [_key_change(layout.seed_key(prefix, rel), value, live.get(layout.seed_key(prefix, rel)))
                   for rel, value in sorted(desired.items())]
        gone = sorted(set(live) - {layout.seed_key(prefix, rel) for rel in desired})
        return changes + [Change(Action.DELETE, key, "no longer in the spec") for key in gone], gone, len(live)
    generation = state.generation or ""
    listed = state.ledgers.get(generation, frozenset())
    applied_at = state.mod(layout.revision_key(prefix))

    def stored(relative: str) -> str | None:
        key = layout.record_key(prefix, generation, relative)
        return key if relative in listed and key in state.live else None

    def as_applied(relative: str, value: bytes) -> bool:
        """Unchanged since the apply that recorded `before` wrote it: that apply wrote every
        record with or before the revision record, so a later mod revision is someone else's."""
        key = stored(relative)
        return before.get(relative) == value and key is not None and state.mod(key) <= applied_at

    compared = [rel for rel, value in sorted(desired.items()) if not as_applied(rel, value)]
    state.prefetch(key for key in map(stored, compared) if key is not None)
    now: dict[str, bytes | None] = {rel: state.value(key) if (key := stored(rel)) is not None else None
                                    for rel in compared}
    changes = [_key_change(layout.seed_key(prefix, rel), value, now[rel]) if rel in now
               else Change(Action.UNCHANGED, layout.seed_key(prefix, rel)) for rel, value in sorted(desired.items())]
    gone = sorted(layout.seed_key(prefix, rel) for rel in before.keys() - desired.keys() if stored(rel) is not None)
    present = sum(1 for rel in listed if layout.record_key(prefix, generation, rel) in state.live)
    return changes + [Change(Action.DELETE, key, "no longer in the spec") for key in gone], gone, present


def _key_change(key: str, value: bytes, live: bytes | None) -> Change:
    if live is None:
        return Change(Action.CREATE, key)
    if live == value:
        return Change(Action.UNCHANGED, key)
    return Change(Action.UPDATE, key, _value_difference(live, value))


def _revision_change(key: str, stamp: str, live: bytes | None, digest: bytes | None,
                     live_digest: bytes | None) -> Change:
    """The revision record: `<prefix>/revision`, and with it `<prefix>/revision-manifest` (written
    when either differs: the same revision compiled otherwise, or recorded by a meshc that kept
    no manifest digest)."""
    if live is not None and live == stamp.encode():
        if live_digest == digest:
            return Change(Action.UNCHANGED, key, bookkeeping=True)
        return Change(Action.UPDATE, key, f"revision {stamp[:12]} compiled to another bundle (manifest "
                      f"{_short(live_digest)} -> {_short(digest)})", bookkeeping=True)
    before = "none" if live is None else live.decode(errors="replace")[:12]
    return Change(Action.CREATE if live is None else Action.UPDATE, key, f"revision {before} -> {stamp[:12]}",
                  bookkeeping=True)


def _short(digest: bytes | None) -> str:
    return "none" if digest is None else digest.decode(errors="replace")[:12]


def manifest_digest(bundle: Bundle) -> bytes | None:
    """The sha256 of the bundle's manifest.json (hex), what `<prefix>/revision-manifest` records:
    the manifest lists the digest of every file, so equal digests mean the same files. None for a
    bundle without a manifest."""
    data = bundle.files.get(MANIFEST_PATH)
    return hashlib.sha256(data).hexdigest().encode() if data is not None else None


def _holds(state: layout.PrefixState, previous: Bundle) -> bool:
    """Whether the prefix records `previous` as what was applied there: its manifest digest, next
    to the revision. No digest recorded (none yet, or written by a meshc that kept none) is not
    a confirmation: the plan is then made in full once, and the apply records one."""
    digest = manifest_digest(previous)
    return digest is not None and state.value(layout.revision_manifest_key(state.prefix)) == digest


def _stale_change(state: layout.PrefixState, generation: str) -> Change:
    listed = state.ledgers[generation]
    what = "an unfinished apply" if state.pointer and state.pointer.pending == generation else "an earlier apply"
    return Change(Action.DELETE, f"{state.prefix}/{layout.GENERATIONS}/{generation}/",
                  f"generation no reader reads, left by {what}: {len(listed)} keys meshc wrote", bookkeeping=True)


def _foreign_notes(state: layout.PrefixState) -> tuple[str, ...]:
    if not state.foreign:
        return ()
    shown = ", ".join(state.foreign[:FOREIGN_SHOWN]) + (", ..." if len(state.foreign) > FOREIGN_SHOWN else "")
    count = len(state.foreign)
    return (f"{count} key{'s' if count != 1 else ''} under {state.prefix}/ that meshc did not write, left "
            f"alone: {shown}",)


def _value_difference(before: bytes, after: bytes) -> str:
    """Which top-level fields of a JSON record differ, e.g. "versions, upstreams"."""
    try:
        old, new = orjson.loads(before), orjson.loads(after)
    except orjson.JSONDecodeError:
        return "value"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "value"
    fields = sorted(k for k in old.keys() | new.keys() if k != "configHash" and old.get(k) != new.get(k))
    return ", ".join(fields) if fields else "value"


def _namespace(bundle: Bundle) -> str:
    """The mesh's Kubernetes namespace, from the Namespace object the bundle carries."""
    if NAMESPACE_PATH not in bundle.files:
        return ""
    for document in bundle.documents(NAMESPACE_PATH):
        if isinstance(document, dict) and document.get("kind") == "Namespace":
            return str((document.get("metadata") or {}).get("name") or "")
    return ""


def _prefix_of(compares: Mapping[str, int]) -> str:
    """The prefix, from the pointer key every transaction compares (`<prefix>/current`)."""
    suffix = f"/{layout.CURRENT}"
    return next((key[:-len(suffix)] + "/" for key in compares if key.endswith(suffix)), "the prefix")
