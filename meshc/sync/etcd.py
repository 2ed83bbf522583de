"""The etcd target: the bundle's seed keys under the mesh prefix, applied in guarded transactions.

One transaction per sync puts changed keys, deletes removed ones and sets `<prefix>/revision`,
guarded by compares on the mod revisions the plan saw (the revision key's, and each written
key's): a concurrent writer makes the transaction fail and the engine plans again — meshc never
writes over a state it did not see. A new commit that changes no record writes one transaction
setting only `<prefix>/revision`; syncing the commit already recorded writes nothing.

Every plan reads the whole prefix (one range request, cheap even for 1,000 services), so a
previous bundle is not needed; the revision key it reads tells the engine whether someone else
synced since (Plan.recorded).

etcd refuses transactions with more than --max-txn-ops operations (128 by default); a sync
bigger than that (the first sync of a large mesh) is split into several guarded transactions,
the revision key going with the last one.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from meshc.bundle import Bundle
from meshc.emit.naming import etcd_revision_key
from meshc.sync.target import (
    Action, ApplyResult, Change, Interrupt, PermanentError, Plan, StalePlan, TransientError,
)

NAME = "etcd"
DEFAULT_MAX_TXN_OPS = 128     # etcd's --max-txn-ops default
DEFAULT_TIMEOUT = 10.0
SERVICES_FAMILY = "services"


@dataclass(frozen=True)
class LiveKey:
    value: bytes
    mod_revision: int


class EtcdTarget:
    """Keys of one mesh in etcd, through the v3 HTTP gateway (etcd3gw)."""

    name = NAME

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
                 ca_cert: str | None = None, cert_cert: str | None = None, cert_key: str | None = None) -> None:
        import etcd3gw

        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentError(f"--etcd wants http(s)://HOST:PORT, not {display_url(url)!r}")
        self.url = display_url(url)
        self.max_txn_ops = max(2, max_txn_ops)
        self._client = etcd3gw.client(host=parts.hostname, port=parts.port or 2379, protocol=parts.scheme,
                                      timeout=timeout, api_path="/v3/", ca_cert=ca_cert, cert_cert=cert_cert,
                                      cert_key=cert_key)

    def __repr__(self) -> str:
        return f"EtcdTarget({self.url!r})"

    # ---- plan -------------------------------------------------------------------------------------

    def plan(self, bundle: Bundle, *, revision: str | None = None, previous: Bundle | None = None,
             interrupt: Interrupt | None = None) -> Plan:
        seed = bundle.etcd_seed()
        prefix = str(seed["prefix"]).rstrip("/")
        desired = {str(key): str(value) for key, value in (seed.get("kvs") or {}).items()}
        live, store_revision = self.read_prefix(prefix)
        revision_key = etcd_revision_key(prefix)
        families = {_family(prefix, key) for key in desired} | {SERVICES_FAMILY}
        managed = {key for key in live if key != revision_key and _family(prefix, key) in families}
        changes = [_key_change(key, value.encode(), live.get(key)) for key, value in sorted(desired.items())]
        changes += [Change(Action.DELETE, key, "no longer in the spec") for key in sorted(managed - set(desired))]
        stamp = revision or str((bundle.manifest.get("source") or {}).get("digest") or "")
        changes.append(_revision_change(revision_key, stamp, live.get(revision_key)))
        seen = {key: live[key].mod_revision if key in live else 0 for key in (*desired, *managed, revision_key)}
        empties = bool(managed) and not managed & set(desired)   # every live record would go
        recorded = live[revision_key].value.decode(errors="replace") if revision_key in live else ""
        return Plan(NAME, tuple(changes), revision=revision, state_token=str(store_revision), empties=empties,
                    recorded=recorded, context={"prefix": prefix, "revision_key": revision_key, "stamp": stamp, "desired": desired,
                             "seen": seen})

    def read_prefix(self, prefix: str) -> tuple[dict[str, LiveKey], int]:
        """Every key under `<prefix>/` with its value and mod revision, and the store's revision."""
        start = f"{prefix}/".encode()
        payload = {"key": _b64(start), "range_end": _b64(_prefix_end(start))}
        answer = self._post("/kv/range", payload)
        live = {}
        for kv in answer.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            live[key] = LiveKey(base64.b64decode(kv.get("value", "")), int(kv.get("mod_revision", 0)))
        return live, int(answer.get("header", {}).get("revision", 0))

    # ---- apply ------------------------------------------------------------------------------------

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        context = plan.context
        revision_key: str = context["revision_key"]
        seen: Mapping[str, int] = context["seen"]
        desired: Mapping[str, str] = context["desired"]
        result = ApplyResult(NAME)
        content = [c for c in plan.writes if not c.bookkeeping]
        stamp = [c for c in plan.writes if c.bookkeeping]
        batches = _batches(content, self.max_txn_ops - 1) or [[]]
        for number, batch in enumerate(batches, start=1):
            last = number == len(batches)
            writes = batch + (stamp if last else [])
            if not writes:
                continue
            operations = [_operation(c, desired, context["stamp"]) for c in writes]
            guarded = [c.key for c in batch] + [revision_key]
            compares = [{"key": _b64(key.encode()), "result": "EQUAL", "target": "MOD", "mod_revision": seen[key]}
                        for key in guarded]
            answer = self._post("/kv/txn", {"compare": compares, "success": operations})
            result.write_requests += 1
            if not answer.get("succeeded"):
                raise StalePlan(f"etcd keys under {context['prefix']}/ changed since the plan was made")
            result.applied += writes
        return result

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        from etcd3gw import exceptions

        try:
            answer: dict[str, Any] = self._client.post(self._client.get_url(path), data=orjson.dumps(payload))
            return answer
        except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError,
                exceptions.InternalServerError) as error:
            raise TransientError(f"etcd at {self.url} is unavailable: {_first_line(error)}") from None
        except exceptions.Etcd3Exception as error:
            raise PermanentError(f"etcd at {self.url} refused the request: {_first_line(error)}") from None

    def close(self) -> None:
        self._client.session.close()


def _key_change(key: str, value: bytes, live: LiveKey | None) -> Change:
    if live is None:
        return Change(Action.CREATE, key)
    if live.value == value:
        return Change(Action.UNCHANGED, key)
    return Change(Action.UPDATE, key, _value_difference(live.value, value))


def _revision_change(key: str, stamp: str, live: LiveKey | None) -> Change:
    if live is not None and live.value == stamp.encode():
        return Change(Action.UNCHANGED, key, bookkeeping=True)
    before = "none" if live is None else live.value.decode(errors="replace")[:12]
    return Change(Action.CREATE if live is None else Action.UPDATE, key, f"revision {before} -> {stamp[:12]}",
                  bookkeeping=True)


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


def _operation(change: Change, desired: Mapping[str, str], stamp: str) -> dict[str, Any]:
    key = _b64(change.key.encode())
    if change.action is Action.DELETE:
        return {"request_delete_range": {"key": key}}
    value = stamp if change.bookkeeping else desired[change.key]
    return {"request_put": {"key": key, "value": _b64(value.encode())}}


def _batches(changes: list[Change], size: int) -> list[list[Change]]:
    return [changes[i:i + size] for i in range(0, len(changes), size)]


def _family(prefix: str, key: str) -> str:
    """`services` for `<prefix>/services/catalog`: the kind of record a key holds."""
    return key[len(prefix) + 1:].split("/", 1)[0]


def _prefix_end(start: bytes) -> bytes:
    return start[:-1] + bytes([start[-1] + 1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _first_line(error: BaseException) -> str:
    text = " ".join(str(arg) for arg in error.args) or type(error).__name__
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


def display_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"
