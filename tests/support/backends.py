"""Loopback HTTP/1.1 backends for traffic through Envoy: they count hits and misbehave on request."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar
from urllib.parse import urlsplit

from tests.support.ports import LOOPBACK

DEFAULT_HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class _Reply:
    status: int
    delay: float


class Backend:
    """An HTTP/1.1 server on 127.0.0.1 that names itself in every answer.

    Body `backend=<name>` and header `x-backend: <name>`; Content-Length and keep-alive, so
    Envoy's connection pool reuses connections as it would with a real service. Requests to
    the health path are answered by `set_healthy()` alone and are counted apart from `hits`.
    """

    def __init__(self, name: str, port: int = 0, health_path: str = DEFAULT_HEALTH_PATH) -> None:
        self.name = name
        self.health_path = health_path
        self._port = port
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._hits = 0
        self._health_checks = 0
        self._connections = 0
        self._path_hits: Counter[str] = Counter()
        self._requests: list[RecordedRequest] = []
        self._status = 200
        self._failures_left = 0
        self._failure_status = 503
        self._delay = 0.0
        self._health_status = 200

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Backend:
        """Listen (again on the same port after a stop) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"backend {self.name} is already running")
        server = _Server((LOOPBACK, self._port), _Handler, self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"backend-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, as a crashed service would."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    # -- behaviour ---------------------------------------------------------------------------
    def fail_first(self, n: int, status: int = 503) -> None:
        """The next n requests (health checks excepted) answer `status`."""
        with self._lock:
            self._failures_left, self._failure_status = n, status

    def set_status(self, status: int) -> None:
        """Every request (health checks excepted) answers `status` from now on."""
        with self._lock:
            self._status = status

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering (health checks excepted)."""
        with self._lock:
            self._delay = seconds

    def set_healthy(self, healthy: bool) -> None:
        self.set_health_status(200 if healthy else 503)

    def set_health_status(self, status: int) -> None:
        with self._lock:
            self._health_status = status

    # -- observations ------------------------------------------------------------------------
    @property
    def hits(self) -> int:
        """Requests served, health checks not included."""
        with self._lock:
            return self._hits

    @property
    def health_checks(self) -> int:
        with self._lock:
            return self._health_checks

    @property
    def connections(self) -> int:
        """TCP connections accepted so far; with keep-alive, far fewer than requests."""
        with self._lock:
            return self._connections

    def path_hits(self, path: str) -> int:
        """Requests to one path (without query), the health path included."""
        with self._lock:
            return self._path_hits[path]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request but health checks, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset_counts(self) -> None:
        with self._lock:
            self._hits = self._health_checks = self._connections = 0
            self._path_hits.clear()
            self._requests.clear()

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1

    def _admit(self, request: RecordedRequest) -> _Reply:
        """Count one request and decide its answer, atomically."""
        path = urlsplit(request.path).path
        with self._lock:
            self._path_hits[path] += 1
            if path == self.health_path:
                self._health_checks += 1
                return _Reply(self._health_status, 0.0)
            self._hits += 1
            self._requests.append(request)
            if self._failures_left > 0:
                self._failures_left -= 1
                return _Reply(self._failure_status, self._delay)
            return _Reply(self._status, self._delay)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, port={self._port}, hits={self._hits})"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], backend: Backend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on DNS.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = LOOPBACK, self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        # A peer that hangs up, or stop() cutting a connection, is normal here; anything else is not.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
        self.backend._connected()

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle holds the body until the
        # peer's delayed ACK (~40 ms), which would make every request through a backend that slow.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the counters are the record; stderr noise would hide test output

    def _serve(self) -> None:
        backend = self.server.backend
        request = RecordedRequest(self.command, self.path, _lower(self.headers.items()), self._read_body())
        reply = backend._admit(request)
        if reply.delay:
            time.sleep(reply.delay)
        body = f"backend={backend.name}".encode()
        self.send_response(reply.status)
        self.send_header("x-backend", backend.name)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


class Server(Protocol):
    name: str

    @property
    def port(self) -> int: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


class ServerPool(Generic[S]):
    """Several test servers started together (all or none), stopped together; `pool[0]`, `pool["b1"]`."""

    def __init__(self, servers: Sequence[S]) -> None:
        names = [server.name for server in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"server names must be distinct: {names}")
        self.backends = list(servers)

    def start(self) -> Self:
        try:
            for backend in self.backends:
                backend.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for backend in self.backends:
            backend.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __iter__(self) -> Iterator[S]:
        return iter(self.backends)

    def __len__(self) -> int:
        return len(self.backends)

    def __getitem__(self, key: int | str) -> S:
        if isinstance(key, int):
            return self.backends[key]
        for backend in self.backends:
            if backend.name == key:
                return backend
        raise KeyError(key)

    @property
    def ports(self) -> list[int]:
        return [backend.port for backend in self.backends]


class BackendPool(ServerPool[Backend]):
    """Several HTTP backends started together: `with BackendPool(3) as pool:` (names b0, b1, b2)."""

    def __init__(self, count: int = 0, names: Sequence[str] = (), prefix: str = "b") -> None:
        chosen = list(names) or [f"{prefix}{i}" for i in range(count)]
        super().__init__([Backend(name) for name in chosen])

    def hits(self) -> dict[str, int]:
        return {backend.name: backend.hits for backend in self.backends}

    @property
    def total_hits(self) -> int:
        return sum(backend.hits for backend in self.backends)
