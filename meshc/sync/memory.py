"""Giving freed memory back to the system, so a long-running watcher does not keep its peak."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_memory() -> None:
    """After work that parsed the whole mesh (a full plan, the watch streams' first LISTs: hundreds
    of MiB at 1,000 services), collect and ask glibc to return free heap pages. A no-op elsewhere.
    Costs a full collection: call it after such work, not on every pass."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
