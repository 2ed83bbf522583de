"""meshc's background threads never take Ctrl-C (SIGINT) or SIGTERM: the kernel hands a signal sent
to the process to a thread that does not block it, and Python would then run the handler in the
main thread at once, even inside a block that holds interrupts back (interrupts_deferred)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from meshc.progress import Progress
from meshc.sync.metrics import MetricsServer, SyncMetrics
from meshc.threads import start_without_interrupts

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not hasattr(signal, "pthread_sigmask"),
                                reason="reads threads' signal masks in /proc (Linux)")

ROOT = Path(__file__).resolve().parents[1]


def blocked_in(thread: threading.Thread) -> set[signal.Signals]:
    """The signals `thread` blocks, as the kernel sees them (SigBlk in /proc)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
    return {sig for sig in (signal.SIGINT, signal.SIGTERM) if mask >> (sig - 1) & 1}


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """A real terminal (a pty's end) for Progress to draw on: it starts its thread on a TTY only."""
    controller, end = os.openpty()
    with os.fdopen(end, "w") as stream:
        try:
            yield stream
        finally:
            os.close(controller)


def test_the_progress_thread_blocks_both_interrupts(terminal: TextIO) -> None:
    with Progress("building", stream=terminal) as progress:
        assert progress._thread is not None
        assert blocked_in(progress._thread) == {signal.SIGINT, signal.SIGTERM}
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())   # the caller's mask is back


def test_the_metrics_server_thread_blocks_both_interrupts() -> None:
    server = MetricsServer(SyncMetrics(), "127.0.0.1", 0, lambda: True).start()
    try:
        assert blocked_in(server._thread) == {signal.SIGINT, signal.SIGTERM}
    finally:
        server.stop()


def test_a_thread_started_without_interrupts_keeps_the_callers_mask_unchanged() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    start_without_interrupts(thread)
    try:
        assert blocked_in(thread) == {signal.SIGINT, signal.SIGTERM}
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
    finally:
        done.set()
        thread.join()


# A Ctrl-C sent to the process (as a terminal does) while a build's progress line is drawn and the
# main thread holds interrupts back. The main thread blocks SIGINT inside the block, so the kernel
# can only hand the signal to another thread or leave it pending for the process. The loop waits
# until one of the two has happened: the KeyboardInterrupt (if a thread took it) or every thread
# blocking SIGINT while it is pending (it then cannot arrive before the block ends).
_CTRL_C_INSIDE_THE_BLOCK = textwrap.dedent("""
    import os, signal, threading
    from pathlib import Path
    from meshc.bundle.store import interrupts_deferred
    from meshc.progress import Progress

    def blocked_everywhere():
        for task in Path("/proc/self/task").iterdir():
            status = (task / "status").read_text()
            mask = int(next(l.split()[1] for l in status.splitlines() if l.startswith("SigBlk:")), 16)
            if not mask >> (signal.SIGINT - 1) & 1:
                return False
        return True

    controller, end = os.openpty()
    where = "nowhere"
    with os.fdopen(end, "w") as terminal, Progress("build", stream=terminal):
        try:
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                while not (signal.SIGINT in signal.sigpending() and blocked_everywhere()):
                    pass
                where = "after the block"
        except KeyboardInterrupt:
            where = where if where != "nowhere" else "inside the block"
    print(where)
""")


def test_a_ctrl_c_to_the_process_while_interrupts_are_held_back_arrives_as_the_block_ends() -> None:
    result = subprocess.run([sys.executable, "-c", _CTRL_C_INSIDE_THE_BLOCK], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "after the block"
