"""Starting meshc's background threads so that Ctrl-C (SIGINT) and SIGTERM reach the main thread only."""

from __future__ import annotations

import signal
import threading

INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})   # meshc.cli: both interrupt


def start_without_interrupts(thread: threading.Thread) -> None:
    """Start `thread` with SIGINT and SIGTERM blocked in it: a new thread inherits the signal mask of
    the one that starts it, so the mask is set around start() and put back at once.

    Python runs a signal's handler in the main thread, but the kernel hands a signal sent to the
    process to any thread that does not block it. While the main thread holds Ctrl-C back
    (meshc.bundle.store.interrupts_deferred), a background thread that does not block it would take
    it, and the main thread would then run the handler at once, inside the block. Blocked in every
    other thread, the signal stays pending until the main thread unblocks it.

    Not for threads that start programs: a child keeps the mask it was forked with."""
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
