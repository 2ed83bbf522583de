"""HTTP/2 backends for traffic through Envoy: a gRPC server (grpcio) and a bare h2c server (h2).

`GrpcBackend` serves one unary method, `/meshc.test.Echo/Call`, through grpcio's generic handlers
with bytes in and bytes out (no .proto, no generated code), next to the standard gRPC health
service (grpc.health.v1) that Envoy's `grpc_health_check` asks. `H2Backend` speaks HTTP/2 with prior
knowledge only: an HTTP/1.1 request cannot reach it, so every answer it gives was carried over h2.
Both name themselves in every answer, count what they serve, and misbehave on request.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.support.backends import ServerPool
from tests.support.ports import LOOPBACK

SERVICE = "meshc.test.Echo"
METHOD = f"/{SERVICE}/Call"
OVERALL_HEALTH = ""      # the health service's name for the whole server; Envoy asks this one by default


class _CountingHealth(health.HealthServicer):   # type: ignore[misc]
    """The standard health service, counting the checks it answers (Envoy's active checks)."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0
        self._count_lock = threading.Lock()

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> health_pb2.HealthCheckResponse:
        with self._count_lock:
            self.checks += 1
        return super().Check(request, context)


@dataclass(frozen=True)
class RecordedCall:
    metadata: Mapping[str, str]   # request metadata (HTTP/2 headers), names lower-case
    request: bytes


class GrpcBackend:
    """A gRPC server on 127.0.0.1 answering `METHOD` with its own name (the response bytes)."""

    def __init__(self, name: str, workers: int = 4) -> None:
        self.name = name
        self._workers = workers
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._health = _CountingHealth()
        self._port = 0
        self._calls: list[RecordedCall] = []
        self._failures_left = 0
        self._failure_code = grpc.StatusCode.UNAVAILABLE

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"grpc-{self.name}"))
        handler = grpc.unary_unary_rpc_method_handler(self._call)   # no (de)serializers: bytes as they are
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Call": handler})])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self._port = server.add_insecure_port(f"{LOOPBACK}:0")
        server.start()
        self._server = server
        self.set_serving(True)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    # -- behaviour ---------------------------------------------------------------------------
    def fail_first(self, n: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """The next n calls end with status `code` (through `context.abort`)."""
        with self._lock:
            self._failures_left, self._failure_code = n, code

    def set_serving(self, serving: bool) -> None:
        """What the health service reports for the whole server: SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self._health.set(OVERALL_HEALTH, status)

    # -- observations ------------------------------------------------------------------------
    @property
    def hits(self) -> int:
        """Calls of `METHOD` received (health checks are not counted)."""
        with self._lock:
            return len(self._calls)

    @property
    def health_checks(self) -> int:
        """grpc.health.v1.Health/Check calls answered."""
        with self._health._count_lock:
            return self._health.checks

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def reset_counts(self) -> None:
        with self._lock:
            self._calls.clear()

    def _call(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = {key.lower(): value for key, value in context.invocation_metadata() if isinstance(value, str)}
        with self._lock:
            self._calls.append(RecordedCall(metadata, request))
            failing = self._failures_left > 0
            if failing:
                self._failures_left -= 1
            code = self._failure_code
        if failing:
            context.abort(code, f"{self.name} refuses this call")
        return self.name.encode()

    def __repr__(self) -> str:
        return f"GrpcBackend({self.name!r}, port={self._port}, hits={self.hits})"


class GrpcPool(ServerPool[GrpcBackend]):
    """Several named gRPC backends started together; `pool["b0"]`, `pool.ports`."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__([GrpcBackend(name) for name in names])


class EchoClient:
    """A gRPC client channel (plaintext HTTP/2) calling `METHOD` at one address."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"{LOOPBACK}:{port}")
        self._call = self._channel.unary_unary(METHOD)   # no (de)serializers: bytes as they are

    def call(self, metadata: Mapping[str, str] | None = None, request: bytes = b"ping") -> str:
        """The name of the backend that answered; a failed call raises grpc.RpcError."""
        answer: bytes = self._call(request, metadata=tuple((metadata or {}).items()), timeout=self.timeout)
        return answer.decode()

    def code_of(self, metadata: Mapping[str, str] | None = None) -> grpc.StatusCode:
        """The status a call ends with (OK when it succeeds)."""
        try:
            self.call(metadata)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
        return grpc.StatusCode.OK

    def wait_ready(self, timeout: float = 5.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- plain HTTP/2 -------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordedRequest:
    headers: Mapping[str, str]    # pseudo-headers included (:method, :path, :authority)


class H2Backend:
    """An h2c server (HTTP/2 with prior knowledge, no TLS, no Upgrade) that names itself.

    Every answer carries `x-backend: <name>` and the body `backend=<name> protocol=HTTP/2`. The
    health path answers 200 or 503 per `set_healthy` and is counted apart from `hits`.
    """

    def __init__(self, name: str, health_path: str = "/healthz") -> None:
        self.name = name
        self.health_path = health_path
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._requests: list[RecordedRequest] = []
        self._health_checks = 0
        self._healthy = True
        self._connection_count = 0

    def start(self) -> Self:
        listener = socket.create_server((LOOPBACK, 0))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"h2-{self.name}", daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._listener is not None, "not started"
        port: int = self._listener.getsockname()[1]
        return port

    def set_healthy(self, healthy: bool) -> None:
        with self._lock:
            self._healthy = healthy

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def health_checks(self) -> int:
        with self._lock:
            return self._health_checks

    @property
    def connections(self) -> int:
        """HTTP/2 connections accepted so far (each carries many requests)."""
        with self._lock:
            return self._connection_count

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return   # stop() closed the listener
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.add(connection)
                self._connection_count += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        peer.initiate_connection()
        pending: dict[int, dict[str, str]] = {}
        try:
            connection.sendall(peer.data_to_send())
            while data := connection.recv(65536):
                for event in peer.receive_data(data):
                    self._on_event(peer, event, pending)
                connection.sendall(peer.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            pass   # a peer that hangs up, stop(), or a client that does not speak h2 (its bytes are refused)
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _on_event(self, peer: h2.connection.H2Connection, event: h2.events.Event,
                  pending: dict[int, dict[str, str]]) -> None:
        if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
            pending[event.stream_id] = {str(k): str(v) for k, v in event.headers or ()}
        elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
            peer.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in pending:
            self._answer(peer, event.stream_id, pending.pop(event.stream_id))

    def _answer(self, peer: h2.connection.H2Connection, stream_id: int, headers: dict[str, str]) -> None:
        with self._lock:
            if headers.get(":path") == self.health_path:
                self._health_checks += 1
                status = 200 if self._healthy else 503
            else:
                self._requests.append(RecordedRequest(headers))
                status = 200
        body = f"backend={self.name} protocol=HTTP/2".encode()
        peer.send_headers(stream_id, [(":status", str(status)), ("x-backend", self.name),
                                      ("content-type", "text/plain"), ("content-length", str(len(body)))])
        peer.send_data(stream_id, body, end_stream=True)


def _shutdown(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
