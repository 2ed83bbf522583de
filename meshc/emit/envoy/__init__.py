"""Envoy emitter: per sidecar, bootstrap.yaml plus file-based xDS (cds.yaml, lds.yaml)."""

from __future__ import annotations

from meshc.emit import Documents
from meshc.resolve import ir


def emit(mesh: ir.Mesh, config_dir: str) -> Documents:
    raise NotImplementedError("the Envoy emitter is being written")
