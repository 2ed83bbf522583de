"""Giving freed memory back to the system, so a long-running watcher does not keep its peak."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_memory() -> None:
    """After work that parsed the whole mesh (a full plan, the watch streams' first LISTs: hundreds
    of MiB at 1,000 services), collect and ask glibc to return free heap pages (a no-op where
    there is no glibc), then park what survived (see `park_long_lived`). Costs a full collection:
    call it after such work, not on every pass."""
    gc.unfreeze()       # what was parked before may be garbage by now
    park_long_lived()
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def park_long_lived() -> None:
    """Collect, then move every surviving object out of the collector's sight (`gc.freeze`).

    A watcher holds the compiled mesh and its bundles, hundreds of thousands of objects, for as
    long as they are the desired state; every full collection would walk them again for nothing
    (most of an idle watcher's CPU). Parked objects are still freed by reference counting when
    dropped (the compiled state has no reference cycles); a cycle among them is collected at the
    next `release_memory`, which unparks everything first."""
    gc.collect()
    gc.freeze()
