"""Where meshc keeps a mesh's records in etcd, what of a prefix is meshc's, and how to read it
consistently.

    <prefix>/revision                     the applied commit sha (what DESIGN.md §3 promises)
    <prefix>/revision-manifest            the sha256 of the applied bundle's manifest.json (which
                                          lists the sha256 of every file): what `revision` was
                                          compiled to, build options included
    <prefix>/current                      {"generation": G, "mesh": ..., "namespace": ...}: which
                                          generation readers read (+ "pending" while a new one is
                                          being written)
    <prefix>/generations/G/services/NAME  the records of generation G: the seed's key
                                          `<prefix>/services/NAME` with `generations/G/` put in
    <prefix>/written/G                    the ledger of G: every record key meshc wrote there
    <prefix>/lock                         the leader lock of `meshc watch` replicas

`current`, `revision` and `revision-manifest` change together, in one small transaction: a reader that reads the
prefix in one range request (one etcd revision), or reads `current` and then the generation at
the revision of that first answer, sees the records of exactly one commit. meshc deletes only
keys a ledger lists (and the ledgers themselves); every other key under the prefix is foreign
and left alone.
"""

from __future__ import annotations

from binascii import a2b_base64
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

CURRENT = "current"
REVISION = "revision"
REVISION_MANIFEST = "revision-manifest"
LOCK = "lock"
GENERATIONS = "generations"
WRITTEN = "written"
LEDGER_FORMAT = "meshc.dev/etcd-ledger/v1"


def current_key(prefix: str) -> str:
    return f"{prefix}/{CURRENT}"


def revision_key(prefix: str) -> str:
    return f"{prefix}/{REVISION}"


def revision_manifest_key(prefix: str) -> str:
    """Where the sha256 of the applied bundle's manifest.json is recorded, next to the revision:
    a plan against a bundle of the recorded revision compiled otherwise (other build options)
    sees that it is not what is live."""
    return f"{prefix}/{REVISION_MANIFEST}"


def ledger_key(prefix: str, generation: str) -> str:
    return f"{prefix}/{WRITTEN}/{generation}"


def record_key(prefix: str, generation: str, relative: str) -> str:
    """Where the record the seed calls `<prefix>/<relative>` lives in generation `generation`."""
    return f"{prefix}/{GENERATIONS}/{generation}/{relative}"


def relative_key(prefix: str, seed_key: str) -> str:
    """`services/catalog` for the seed key `<prefix>/services/catalog`."""
    return seed_key[len(prefix) + 1:]


def seed_key(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}"


def generation_name(store_revision: int) -> str:
    """Generations are named after the etcd revision their plan read, zero-padded so that they
    sort in the order they were made; a guarded write makes them unique."""
    return f"{store_revision:012d}"


@dataclass(frozen=True)
class Pointer:
    """The value of `<prefix>/current`."""

    generation: str | None = None
    pending: str | None = None
    mesh: str | None = None
    namespace: str | None = None

    def encode(self) -> bytes:
        data = {"generation": self.generation, "pending": self.pending, "mesh": self.mesh,
                "namespace": self.namespace}
        return orjson.dumps({k: v for k, v in data.items() if v is not None}, option=orjson.OPT_SORT_KEYS)

    @staticmethod
    def decode(value: bytes | None) -> Pointer | None:
        """None when the value is not a pointer meshc wrote."""
        if value is None:
            return None
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return None
        if not set(data) <= {"generation", "pending", "mesh", "namespace"}:
            return None
        return Pointer(data.get("generation"), data.get("pending"), data.get("mesh"), data.get("namespace"))


def encode_ledger(generation: str, relatives: Iterable[str]) -> bytes:
    return orjson.dumps({"format": LEDGER_FORMAT, "generation": generation, "keys": sorted(set(relatives))})


def decode_ledger(generation: str, value: bytes) -> frozenset[str] | None:
    """The relative keys a ledger lists; None when the value is not a ledger meshc wrote for
    that generation (then neither it nor anything it names is meshc's to delete)."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT or data.get("generation") != generation:
        return None
    keys = data.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        return None
    return frozenset(keys)


@dataclass(frozen=True)
class PrefixState:
    """One range read of `<prefix>/`, sorted into what is meshc's and what is not."""

    prefix: str
    store_revision: int
    pointer: Pointer | None
    ledgers: Mapping[str, frozenset[str]]            # generation -> relative keys meshc wrote
    live: Mapping[str, tuple[bytes, int]]            # every key -> (value, mod revision)
    foreign: tuple[str, ...] = field(default=())     # keys under the prefix that meshc did not write

    @property
    def generation(self) -> str | None:
        return self.pointer.generation if self.pointer else None

    def mod(self, key: str) -> int:
        live = self.live
        if isinstance(live, Sparse):
            return live.mod(key)
        return live[key][1] if key in live else 0

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read the values of these keys together, when the state was read without values (a
        state read with its values has them all)."""
        if isinstance(self.live, Sparse):
            self.live.prefetch(keys)

    def value(self, key: str) -> bytes | None:
        return self.live[key][0] if key in self.live else None

    def records(self, generation: str | None = None) -> dict[str, bytes]:
        """The records of a generation (default: the one readers read), by seed key."""
        generation = generation or self.generation
        if generation is None:
            return {}
        listed = self.ledgers.get(generation, frozenset())
        out = {}
        for relative in sorted(listed):
            value = self.value(record_key(self.prefix, generation, relative))
            if value is not None:
                out[seed_key(self.prefix, relative)] = value
        return out

    def stale_generations(self) -> list[str]:
        """Generations with a ledger that no reader reads: left by an apply that stopped before
        or after its switch. (A pending generation is stale too: the next guarded write of this
        prefix fences off whoever was writing it.)"""
        return sorted(g for g in self.ledgers if g != self.generation)


def classify(prefix: str, kvs: Mapping[str, tuple[bytes, int]], store_revision: int) -> PrefixState:
    """Sort a range read of `<prefix>/` into meshc's keys and foreign ones."""
    pointer = Pointer.decode(kvs[current_key(prefix)][0]) if current_key(prefix) in kvs else None
    ledgers = {}
    ledger_root = f"{prefix}/{WRITTEN}/"
    for key in kvs:
        if key.startswith(ledger_root) and "/" not in key[len(ledger_root):]:
            listed = decode_ledger(key[len(ledger_root):], kvs[key][0])
            if listed is not None:
                ledgers[key[len(ledger_root):]] = listed
    owned = {revision_key(prefix), revision_manifest_key(prefix), f"{prefix}/{LOCK}"}
    if pointer is not None:
        owned.add(current_key(prefix))
    for generation, listed in ledgers.items():
        owned.add(ledger_key(prefix, generation))
        owned.update(record_key(prefix, generation, relative) for relative in listed)
    foreign = tuple(sorted(key for key in kvs if key not in owned))
    return PrefixState(prefix, store_revision, pointer, ledgers, kvs, foreign)


def range_end(start: str) -> str:
    """The end of the range of keys that begin with `start` (which ends in '/')."""
    return start[:-1] + chr(ord(start[-1]) + 1)


def range_request(prefix: str, revision: int | None = None, *, keys_only: bool = False) -> dict[str, Any]:
    """The gateway payload of a range over `<prefix>/` (at `revision`, if given; without the
    values when `keys_only`)."""
    import base64

    start = f"{prefix}/".encode()
    end = start[:-1] + bytes([start[-1] + 1])
    payload: dict[str, Any] = {"key": base64.b64encode(start).decode(), "range_end": base64.b64encode(end).decode()}
    if revision:
        payload["revision"] = revision
    if keys_only:
        payload["keys_only"] = True
    return payload


def bookkeeping_keys(prefix: str, keys: Iterable[str]) -> list[str]:
    """Of a prefix's keys, those whose values say what of it is meshc's and what was applied:
    `current`, `revision`, `revision-manifest` and the ledgers (what `classify` reads)."""
    own = {current_key(prefix), revision_key(prefix), revision_manifest_key(prefix)}
    ledger_root = f"{prefix}/{WRITTEN}/"
    return [key for key in keys if key in own or (key.startswith(ledger_root) and "/" not in key[len(ledger_root):])]


def parse_range(answer: Mapping[str, Any]) -> tuple[Mapping[str, tuple[bytes, int]], int]:
    """The keys of a range answer, each with its value and mod revision; values are decoded
    when first read (an incremental plan reads a few records of thousands)."""
    kvs = {a2b_base64(kv["key"]).decode(): (kv.get("value", ""), int(kv.get("mod_revision", 0)))
           for kv in answer.get("kvs", [])}
    return _Values(kvs), int(answer.get("header", {}).get("revision", 0))


def parse_keys(answer: Mapping[str, Any]) -> tuple[dict[str, int], int]:
    """The keys of a keys-only range answer, each with its mod revision, and the answer's etcd revision."""
    keys = {a2b_base64(kv["key"]).decode(): int(kv.get("mod_revision", 0)) for kv in answer.get("kvs", [])}
    return keys, int(answer.get("header", {}).get("revision", 0))


class Sparse(Mapping[str, tuple[bytes, int]]):
    """Keys of a keys-only range answer -> (value, mod revision), each value read from etcd at
    the answer's revision when first asked for (`fetch` reads a list of keys at once; `prefetch`
    gathers the ones a plan knows it will read into one request). An incremental plan of a large
    mesh reads the values of a few records of thousands."""

    __slots__ = ("_mods", "_values", "_fetch")

    def __init__(self, mods: dict[str, int], fetch: Callable[[list[str]], Mapping[str, bytes]]) -> None:
        self._mods = mods
        self._values: dict[str, bytes] = {}
        self._fetch = fetch

    def mod(self, key: str) -> int:
        """The key's mod revision; 0 for a key the range did not list."""
        return self._mods.get(key, 0)

    def prefetch(self, keys: Iterable[str]) -> None:
        wanted = [key for key in keys if key in self._mods and key not in self._values]
        if wanted:
            self._values.update(self._fetch(wanted))

    def __getitem__(self, key: str) -> tuple[bytes, int]:
        mod = self._mods[key]
        if key not in self._values:
            self.prefetch([key])
        return self._values[key], mod

    def __contains__(self, key: object) -> bool:
        return key in self._mods

    def __iter__(self) -> Iterator[str]:
        return iter(self._mods)

    def __len__(self) -> int:
        return len(self._mods)


class _Values(Mapping[str, tuple[bytes, int]]):
    """Keys of a range answer -> (value, mod revision), the value base64-decoded when first read."""

    __slots__ = ("_encoded", "_decoded")

    def __init__(self, encoded: dict[str, tuple[str, int]]) -> None:
        self._encoded = encoded
        self._decoded: dict[str, tuple[bytes, int]] = {}

    def __getitem__(self, key: str) -> tuple[bytes, int]:
        found = self._decoded.get(key)
        if found is None:
            value, mod = self._encoded[key]
            found = self._decoded[key] = (a2b_base64(value), mod)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._encoded

    def __iter__(self) -> Iterator[str]:
        return iter(self._encoded)

    def __len__(self) -> int:
        return len(self._encoded)


@dataclass(frozen=True)
class Snapshot:
    """What a reader sees: the records of exactly one applied commit."""

    revision: str | None            # `<prefix>/revision`: the commit these records are from
    generation: str | None
    records: dict[str, bytes]       # by the seed's key, e.g. `<prefix>/services/catalog`
    store_revision: int             # the etcd revision the read was made at


def read_snapshot(client: Any, prefix: str) -> Snapshot:
    """Read a mesh's records the consistent way: one range request over `<prefix>/` (one etcd
    revision), then the generation `<prefix>/current` names. `client` is an etcd3gw client."""
    prefix = prefix.rstrip("/")
    kvs, store_revision = parse_range(client.post(client.get_url("/kv/range"), json=range_request(prefix)))
    state = classify(prefix, kvs, store_revision)
    revision = state.value(revision_key(prefix))
    return Snapshot(revision.decode(errors="replace") if revision is not None else None, state.generation,
                    state.records(), store_revision)
