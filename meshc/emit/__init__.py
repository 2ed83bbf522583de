"""Emit stage: one emitter per target, each reading only the IR (never another emitter).

An emitter yields `(path, documents)` pairs — a path inside the output directory and the
documents of that file — from `iter_documents`; `emit` collects them into `Documents`. The
pipeline renders each file as soon as it is yielded (meshc.render), so a large mesh never holds
all of its documents in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Documents = dict[str, list[Any]]
DocumentStream = Iterator[tuple[str, list[Any]]]
