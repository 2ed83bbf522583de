"""Bytes of generated files: one serializer, so key order and formatting live in one place.

Every generated document is written as indented JSON with sorted keys. JSON is valid YAML, so the
`.yaml` files meshc writes are read by Envoy, kubectl and kustomize as YAML, while the build stays
fast (orjson serializes ~50x faster than a YAML emitter) and byte-for-byte deterministic. JSON
allows a few characters raw that YAML refuses or reads as line breaks (DEL, C1 controls, U+2028,
U+FFFF...): those are written as JSON escapes (meshc.text), so every file reads the same both ways.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from meshc.text import escape_json

# Subclasses of str, int, dict and list go through _encoded, so that an EncodedText is written
# from its stored encoding; exact types (nearly every value) are unaffected.
_PRETTY = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
_COMPACT = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
DOCUMENT_SEPARATOR = b"---\n"


class EncodedText(str):
    """A string that carries its JSON encoding. A large text that is serialized more than once (a
    sidecar's Envoy files in its ConfigMap: hashed for the config-hash annotation, then rendered)
    is escaped once; the bytes written are the same as for the plain string."""

    json: bytes


def encoded_text(text: str) -> str:
    """text, as a string that renders from a stored encoding (see EncodedText)."""
    found = EncodedText(text)
    found.json = orjson.dumps(text)
    return found


def _encoded(value: Any) -> Any:
    """orjson's fallback: an EncodedText as its stored bytes, other subclasses as their base type
    (what orjson writes for them by default)."""
    if isinstance(value, EncodedText):
        return orjson.Fragment(value.json)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def document(doc: Any) -> bytes:
    """One document, pretty, newline-terminated."""
    return escape_json(orjson.dumps(doc, option=_PRETTY, default=_encoded)) + b"\n"


def documents(docs: Sequence[Any]) -> bytes:
    """A multi-document YAML stream (`---` between documents), in the order given."""
    return DOCUMENT_SEPARATOR.join(document(doc) for doc in docs)


def file(docs: Sequence[Any]) -> bytes:
    """A generated file: its one document, or a `---` separated stream of several."""
    return document(docs[0]) if len(docs) == 1 else documents(docs)


def shared_file(data: bytes) -> bytes:
    """A generated file rewritten compactly, with every repeated part (an access log, a TLS
    context, a filter list, ...) written once with a YAML anchor (`&s1 {...}`) and afterwards as an
    alias (`*s1`). JSON with anchors is YAML flow style: the same documents for any YAML reader
    (Envoy's included), in a sixth of the bytes of indented JSON for a sidecar with hundreds of
    upstreams, whose listeners and clusters repeat the same blocks. For ConfigMaps, with their
    size limit; the files in envoy/ stay as they are, readable as JSON."""
    docs = [_interned(orjson.loads(part), {}) for part in data.split(b"\n" + DOCUMENT_SEPARATOR)]
    return DOCUMENT_SEPARATOR.join(escape_json(_AnchoredWriter(doc).text()) + b"\n" for doc in docs)


def _interned(node: Any, seen: dict[bytes, Any]) -> Any:
    """node with every equal container of at least _SHARED_MIN_BYTES the same object (smaller
    parts would gain nothing from an alias)."""
    if isinstance(node, dict):
        node = {key: _interned(value, seen) for key, value in node.items()}
    elif isinstance(node, list):
        node = [_interned(value, seen) for value in node]
    else:
        return node
    key = orjson.dumps(node, option=_COMPACT, default=_encoded)
    return node if len(key) < _SHARED_MIN_BYTES else seen.setdefault(key, node)


class _AnchoredWriter:
    """Writes a document whose repeated containers are one object: the first time with an anchor,
    then as an alias. Anchor names end at `,`, `]` or `}`, in YAML 1.1 and 1.2 readers alike."""

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.uses: dict[int, int] = {}
        self._count(doc)
        self.anchors: dict[int, bytes] = {}

    def _count(self, node: Any) -> None:
        if not isinstance(node, (dict, list)):
            return
        seen_before = id(node) in self.uses
        self.uses[id(node)] = self.uses.get(id(node), 0) + 1
        if not seen_before:
            for child in node.values() if isinstance(node, dict) else node:
                self._count(child)

    def text(self) -> bytes:
        parts: list[bytes] = []
        self._write(self.doc, parts)
        return b"".join(parts)

    def _write(self, node: Any, out: list[bytes]) -> None:
        if not isinstance(node, (dict, list)):
            out.append(orjson.dumps(node))
            return
        if self.uses[id(node)] > 1:
            if id(node) in self.anchors:
                out.append(b"*" + self.anchors[id(node)])
                return
            name = self.anchors[id(node)] = b"s%d" % (len(self.anchors) + 1)
            out.append(b"&" + name + b" ")
        if isinstance(node, dict):
            out.append(b"{")
            for index, key in enumerate(sorted(node)):
                out.append(b"," if index else b"")
                out.append(orjson.dumps(key) + b":")
                self._write(node[key], out)
            out.append(b"}")
        else:
            out.append(b"[")
            for index, item in enumerate(node):
                out.append(b"," if index else b"")
                self._write(item, out)
            out.append(b"]")


_SHARED_MIN_BYTES = 48


def compact(doc: Any) -> str:
    """Canonical compact JSON text: for values stored in etcd and for hashing."""
    return escape_json(orjson.dumps(doc, option=_COMPACT, default=_encoded)).decode()


def content_hash(doc: Any, length: int = 16) -> str:
    """A short, stable hash of a document's canonical form."""
    return hashlib.sha256(orjson.dumps(doc, option=_COMPACT, default=_encoded)).hexdigest()[:length]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
