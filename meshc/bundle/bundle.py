"""The in-memory bundle: relative path -> bytes, and the manifest that describes them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import functools
import zlib

import orjson
import yaml

from meshc import __version__, render
from meshc.emit import Documents
from meshc.emit.naming import ETCD_SEED_PATH, KUSTOMIZATION_PATH, MANIFEST_PATH, NAMESPACE_PATH

# zlib's fastest level: Envoy's JSON still shrinks about tenfold
PACK_LEVEL = 1
ENVOY_DIR = "envoy/"
KUBERNETES_DIR = "kubernetes/"
WHOLE_MESH_FILES = frozenset({NAMESPACE_PATH, KUSTOMIZATION_PATH})

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


@dataclass(frozen=True)
class Bundle:
    files: Mapping[str, bytes]     # every output file, manifest.json included, keyed by relative path

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        """manifest.json, parsed once (a watcher asks on every pass): read it, do not change it."""
        loaded: dict[str, Any] = orjson.loads(self.files[MANIFEST_PATH])
        return loaded

    def paths(self, prefix: str = "") -> list[str]:
        return sorted(p for p in self.files if p.startswith(prefix))

    def documents(self, path: str) -> list[Any]:
        """The documents of one generated file (every file meshc writes is JSON-shaped YAML)."""
        return [doc for doc in yaml.load_all(self.files[path], Loader=_Loader) if doc is not None]

    def kubernetes_objects(self) -> Iterator[dict[str, Any]]:
        """Every Kubernetes object of the bundle, in file order (namespace first)."""
        for path in self.paths("kubernetes/"):
            if path.endswith("kustomization.yaml"):
                continue
            yield from self.documents(path)

    def etcd_seed(self) -> dict[str, Any]:
        """etcd/seed.json, parsed once: read it, do not change it."""
        return self._seed

    @functools.cached_property
    def _seed(self) -> dict[str, Any]:
        seed: dict[str, Any] = orjson.loads(self.files[ETCD_SEED_PATH])
        return seed


class PackedFiles(Mapping[str, bytes]):
    """A bundle's files, some of them kept zlib-compressed (read back on access).

    For a process that holds bundles for as long as it runs (`meshc watch`): the per-service
    files (a sidecar's Envoy files, a service's Kubernetes file) are most of a bundle, and a sync
    reads only those that changed (all of them only in a full plan, every drift interval); kept
    compressed they take a tenth of the memory. Paths iterate in the bundle's order."""

    __slots__ = ("_order", "_packed", "_plain")

    def __init__(self, plain: Mapping[str, bytes], packed: Mapping[str, bytes], order: Sequence[str]) -> None:
        self._plain = dict(plain)
        self._packed = dict(packed)
        self._order = tuple(order)

    def __getitem__(self, path: str) -> bytes:
        data = self._plain.get(path)
        if data is not None:
            return data
        return zlib.decompress(self._packed[path])

    def __contains__(self, path: object) -> bool:
        return path in self._plain or path in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def packed(self, path: str) -> bytes | None:
        """The compressed bytes of a packed file, to carry it into another bundle as it is."""
        return self._packed.get(path)


def is_packable(path: str) -> bool:
    """A service's (or gateway's) own file; the whole-mesh files stay as they are."""
    return path.startswith(ENVOY_DIR) or (path.startswith(KUBERNETES_DIR) and path not in WHOLE_MESH_FILES)


def pack(bundle: Bundle) -> Bundle:
    """The bundle with its packable files compressed in memory (those already packed stay as they are)."""
    files = bundle.files
    already = files if isinstance(files, PackedFiles) else None
    plain: dict[str, bytes] = {}
    packed: dict[str, bytes] = {}
    for path in files:
        blob = already.packed(path) if already is not None else None
        if blob is not None:
            packed[path] = blob
        elif is_packable(path):
            packed[path] = zlib.compress(files[path], PACK_LEVEL)
        else:
            plain[path] = files[path]
    return Bundle(PackedFiles(plain, packed, list(files)))


def render_files(documents: Documents) -> dict[str, bytes]:
    """Bytes of every emitted file: one document per file, or a `---` separated stream."""
    return {path: render.file(docs) for path, docs in documents.items()}


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What manifest.json records of one file."""

    sha256: str
    size: int

    @classmethod
    def of(cls, data: bytes) -> FileEntry:
        return cls(render.sha256(data), len(data))


def manifest(entries: Mapping[str, FileEntry], *, mesh: str, spec_digest: str, revision: str | None = None,
             external: Sequence[Mapping[str, Any]] = ()) -> bytes:
    """manifest.json: what was built from which spec, and the digest of every other file (no
    clocks: same input, same bytes); `external`: objects the manifests need that meshc does not
    create (listed only when there are any)."""
    document: dict[str, Any] = {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "BuildManifest",
        "meshcVersion": __version__,
        "mesh": mesh,
        "source": {"revision": revision, "digest": spec_digest},
        # in path order once rendered (sorted keys): not sorted here too
        "files": {path: {"sha256": entry.sha256, "size": entry.size} for path, entry in entries.items()},
    }
    if external:
        document["externalDependencies"] = [dict(item) for item in external]
    return render.document(document)


def make_bundle(files: Mapping[str, bytes], *, mesh: str, spec_digest: str, revision: str | None = None,
                external: Sequence[Mapping[str, Any]] = (), known: Mapping[str, FileEntry] | None = None,
                packed: Mapping[str, bytes] | None = None) -> Bundle:
    """Rendered files plus their manifest.json, in path order. `known`: entries of files whose
    digest is already known (files taken unchanged from an earlier bundle), not hashed again;
    `packed`: more such files, still compressed (PackedFiles), each with its entry in `known`."""
    known = known or {}
    packed = packed or {}
    ordered = {path: files[path] for path in sorted(files)}
    entries = {path: known.get(path) or FileEntry.of(data) for path, data in ordered.items()}
    entries |= {path: known[path] for path in packed}
    ordered[MANIFEST_PATH] = manifest(entries, mesh=mesh, spec_digest=spec_digest, revision=revision,
                                      external=external)
    if not packed:
        return Bundle(ordered)
    return Bundle(PackedFiles(ordered, packed, [*sorted(entries), MANIFEST_PATH]))
