"""Emit stage: one emitter per target, each reading only the IR (never another emitter).

An emitter yields `(path, documents)` pairs — a path inside the output directory and the
documents of that file — from `iter_documents`; `emit` collects them into `Documents`. The
pipeline goes one deployed service at a time instead (`envoy.sidecar_emitter`,
`kubernetes.service_objects`, then `kubernetes.mesh_documents` and `etcd.emit`) and renders each
file as soon as it exists (meshc.render), so a large mesh never holds all of its documents in
memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Documents = dict[str, list[Any]]
DocumentStream = Iterator[tuple[str, list[Any]]]
