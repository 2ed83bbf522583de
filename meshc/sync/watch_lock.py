"""Leader election for `meshc watch` replicas: one etcd key held under a lease.

The holder creates `<prefix>/lock` in a transaction that succeeds only while the key does not
exist (create_revision == 0), attached to a lease it keeps alive from a background thread. When
the holder dies its lease expires, etcd deletes the key, and a standby takes over. Only the
holder applies; the others keep polling and compiling, so a takeover starts from a warm state.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import threading
from typing import Any, Protocol

from meshc.threads import start_without_interrupts

DEFAULT_TTL = 15


class EtcdLockClient(Protocol):
    """What the lock needs of an etcd v3 client (etcd3gw's Etcd3Client has it)."""

    def lease(self, ttl: int = ...) -> Any: ...

    def transaction(self, txn: dict[str, Any]) -> Any: ...


def etcd_client(url: str, *, timeout: float = 5.0) -> Any:
    """An etcd3gw client for the lock, from a plain `--etcd` URL (no TLS, no auth: tests, and
    etcds that need neither); `meshc watch` opens its own from the full etcd settings."""
    from meshc.sync.etcd_client import EtcdAccess, open_client

    return open_client(EtcdAccess(url, timeout=timeout))


def default_identity() -> str:
    """Pod name (the hostname in Kubernetes), pid and a random tag: unique per process."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class LeaderLock:
    """`ensure()` before each apply: True while this process holds the lock.

    Any etcd failure counts as "not the leader": a replica that cannot reach etcd cannot prove
    it still holds the lease, and a standby may already have taken over.
    """

    def __init__(self, client: EtcdLockClient, key: str, *, identity: str | None = None,
                 ttl: int = DEFAULT_TTL) -> None:
        if ttl < 2:
            raise ValueError("the lock's lease TTL must be at least 2 seconds")
        self.client = client
        self.key = key
        self.identity = identity or default_identity()
        self.ttl = ttl
        self._lease: Any = None
        self._held = threading.Event()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def held(self) -> bool:
        return self._held.is_set()

    def ensure(self) -> bool:
        """Hold the lock if possible: try to take it when free; report whether it is ours."""
        if self._held.is_set():
            return True
        try:
            return self._acquire()
        except Exception as exc:  # noqa: BLE001 - etcd3gw raises requests and Etcd3Exception errors alike
            self.last_error = _describe(exc)
            return False

    def release(self) -> None:
        """Give the lock up at once (delete the key if ours, revoke the lease), for a fast takeover."""
        self._stop_keeper()
        lease, self._lease = self._lease, None
        self._held.clear()
        if lease is None:
            return
        try:
            self.client.transaction({
                "compare": [{"key": _b64(self.key), "result": "EQUAL", "target": "VALUE",
                             "value": _b64(self.identity)}],
                "success": [{"request_delete_range": {"key": _b64(self.key)}}],
                "failure": [],
            })
            lease.revoke()
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself anyway
            self.last_error = _describe(exc)

    # -- internals ---------------------------------------------------------------------------
    def _acquire(self) -> bool:
        lease = self._live_lease()
        result = self.client.transaction({
            "compare": [{"key": _b64(self.key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": _b64(self.key), "value": _b64(self.identity), "lease": lease.id}}],
            "failure": [{"request_range": {"key": _b64(self.key)}}],
        })
        # The key may still be ours: the keeper gave up while etcd was down, and etcd (which
        # renews leases when it comes back) kept our lease and key alive. Then it is ours again.
        if not result.get("succeeded") and _holder(result) != self.identity:
            return False
        self.last_error = None
        self._held.set()
        self._start_keeper()
        return True

    def _live_lease(self) -> Any:
        """Our lease if etcd still has it, else a new one."""
        if self._lease is not None and self._lease.refresh() > 0:
            return self._lease
        self._lease = self.client.lease(self.ttl)
        return self._lease

    def _start_keeper(self) -> None:
        self._stop_keeper()
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_alive, args=(self._stop,), name="meshc-lock-keepalive",
                                        daemon=True)
        start_without_interrupts(self._keeper)

    def _stop_keeper(self) -> None:
        self._stop.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=5)
        self._keeper = None

    def _keep_alive(self, stop: threading.Event) -> None:
        """Refresh the lease three times per TTL; a refresh that fails for a whole TTL loses the lock."""
        period = self.ttl / 3
        failures = 0
        while not stop.wait(period):
            lease = self._lease
            if lease is None:
                return
            try:
                alive = lease.refresh() > 0
                failures = 0 if alive else 3
                if alive:
                    self.last_error = None
            except Exception as exc:  # noqa: BLE001 - etcd down or unreachable
                self.last_error = _describe(exc)
                failures += 1
            if failures >= 3:
                # The lease may have expired at the server: another replica may hold the lock now.
                self._held.clear()
                return


def _holder(txn_result: Any) -> str | None:
    """The identity stored in the lock key, from a failed transaction's range response."""
    for response in txn_result.get("responses", []):
        for kv in response.get("response_range", {}).get("kvs", []):
            return base64.b64decode(kv.get("value", "")).decode(errors="replace")
    return None


def _describe(exc: Exception) -> str:
    from meshc.sync.etcd_client import describe

    return f"{type(exc).__name__}: {describe(exc)}"
