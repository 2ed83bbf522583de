"""The in-memory bundle: relative path -> bytes, and the manifest that describes them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from meshc import __version__, render
from meshc.emit import Documents, DocumentStream
from meshc.emit.naming import ETCD_SEED_PATH, MANIFEST_PATH

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


@dataclass(frozen=True)
class Bundle:
    files: Mapping[str, bytes]     # every output file, manifest.json included, keyed by relative path

    @property
    def manifest(self) -> dict[str, Any]:
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
        seed: dict[str, Any] = orjson.loads(self.files[ETCD_SEED_PATH])
        return seed


def render_files(documents: Documents) -> dict[str, bytes]:
    """Bytes of every emitted file: one document per file, or a `---` separated stream."""
    return render_stream(iter(documents.items()))


def render_stream(stream: DocumentStream) -> dict[str, bytes]:
    """Render files as an emitter yields them; each file's documents can be freed at once."""
    return {path: render.document(docs[0]) if len(docs) == 1 else render.documents(docs) for path, docs in stream}


def make_bundle(files: Mapping[str, bytes], *, mesh: str, spec_digest: str,
                revision: str | None = None) -> Bundle:
    """Add manifest.json to rendered files (no clocks: same input, same bytes)."""
    ordered = {path: files[path] for path in sorted(files)}
    manifest = {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "BuildManifest",
        "meshcVersion": __version__,
        "mesh": mesh,
        "source": {"revision": revision, "digest": spec_digest},
        "files": {path: {"sha256": render.sha256(data), "size": len(data)} for path, data in ordered.items()},
    }
    ordered[MANIFEST_PATH] = render.document(manifest)
    return Bundle(ordered)
