"""Free loopback ports for the servers tests start, and polling with a hard deadline instead of sleeps.

Ports are handed out below the kernel's ephemeral range (net.ipv4.ip_local_port_range), where the
kernel never picks one on its own: a port found free there stays free until the test's server
binds it, even while other processes open connections (each takes an ephemeral source port, which
could otherwise be the very port a test was about to bind). Each pytest-xdist worker takes its
own slice of that range, so two workers never hand out the same port. Where the range cannot be
read, or leaves no room below it, the OS picks (bind to port 0)."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack
from typing import TypeVar

LOOPBACK = "127.0.0.1"
DEFAULT_INTERVAL = 0.02

T = TypeVar("T")

_HANDED_OUT: set[int] = set()


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline; an AssertionError so pytest reports a failure."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reports free right now."""
    return free_ports(1)[0]


def free_ports(n: int, avoid: Collection[int] = ()) -> list[int]:
    """n distinct free ports: all sockets stay bound until every port is known.

    A port is handed out once per test session, and never one in `avoid` (ports a spec names
    but nothing has bound yet): a port given to a spec that is not running yet is free in the OS's
    eyes, so a later call could otherwise hand it out again and two listeners would clash."""
    ports: list[int] = []
    candidates = _candidates()
    with ExitStack() as stack:
        while len(ports) < n:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            port = _bind(sock, candidates)
            if port not in avoid and port not in _HANDED_OUT:
                ports.append(port)
    _HANDED_OUT.update(ports)
    return ports


# Below the ephemeral range, from here up: clear of the well-known and most registered services' ports.
_LOWEST = 10000


def _candidates() -> Iterator[int]:
    """This worker's slice of the ports below the ephemeral range, from a random point in it
    (tests run one after another in a worker: each call starts afresh), wrapping around once."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            ephemeral_low = int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return iter(())
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = int((os.environ.get("PYTEST_XDIST_WORKER") or "gw0").removeprefix("gw") or 0) % workers
    width = (ephemeral_low - _LOWEST) // workers
    if width < 256:
        return iter(())
    low = _LOWEST + worker * width
    start = random.randrange(width)
    return iter([*range(low + start, low + width), *range(low, low + start)])


def _bind(sock: socket.socket, candidates: Iterator[int]) -> int:
    """Bind `sock` on loopback to the next candidate that is free (the OS's pick once none is
    left) and return its port."""
    for port in candidates:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            continue
        return port
    sock.bind((LOOPBACK, 0))
    return int(sock.getsockname()[1])


def poll_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = DEFAULT_INTERVAL,
    message: str | Callable[[], str] = "condition not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call predicate until it returns a truthy value and return that value.

    Exceptions listed in `ignore` count as "not yet". At the deadline a WaitTimeout is raised;
    `message` may be a callable so costly details (a log tail) are only built on failure.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ignore as error:
            last_error = error
        if time.monotonic() >= deadline:
            raise WaitTimeout(_timeout_message(message, timeout, last_error))
        time.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on host:port."""
    poll_until(
        lambda: _accepts(host, port),
        timeout=timeout,
        message=f"nothing listens on {host}:{port}",
    )


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _timeout_message(message: str | Callable[[], str], timeout: float, error: BaseException | None) -> str:
    text = message() if callable(message) else message
    suffix = f" (last error: {error!r})" if error is not None else ""
    return f"after {timeout:.1f}s: {text}{suffix}"
