"""Emit stage: one emitter per target, each reading only the IR (never another emitter).

An emitter returns `Documents`: a mapping from a path inside the output directory to the
documents of that file. The bundle stage turns them into bytes (meshc.render).
"""

from __future__ import annotations

from typing import Any

Documents = dict[str, list[Any]]
