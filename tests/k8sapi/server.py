"""`FakeKubeAPI`: the Kubernetes API server test double, served over HTTP on a loopback port.

The HTTP plumbing and the test hooks (fault injection, delays, the request log) live here; routing
lives in `routes.py` and what each verb does to objects in `store.py`.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from tests.k8sapi import catalog, errors
from tests.k8sapi.label_selectors import SelectorError
from tests.k8sapi.routes import READ_METHODS, Request, Response, route
from tests.k8sapi.store import Store


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    status: int
    field_manager: str = ""
    injected: bool = False  # answered by `fail_next`, never reached the store
    changed: bool = False  # the store committed a change (resourceVersion moved)


class Gate:
    """Where a held request waits: `reached` is set when it arrives, and it goes on once the
    test calls `release()` (or after `timeout` seconds, so that a failing test cannot hang)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.reached = threading.Event()
        self._released = threading.Event()
        self._timeout = timeout

    def release(self) -> None:
        self._released.set()

    def wait(self) -> None:
        self.reached.set()
        self._released.wait(self._timeout)


@dataclass
class Rule:
    """A fault, a delay or a hold for the next `remaining` matching requests."""
    remaining: int
    methods: frozenset[str] | None
    path_contains: str | None
    status: int = 500
    message: str = ""
    seconds: float = 0.0
    gate: Gate | None = None
    retry_after: int | None = None
    cut: str = ""   # "before" or "after" the request is served: the answer is cut off half-way

    def matches(self, request: Request) -> bool:
        return ((self.methods is None or request.method in self.methods)
                and (self.path_contains is None or self.path_contains in request.path))


class FakeKubeAPI:
    """A stateful stand-in for kube-apiserver; `start()` it, point a kubeconfig at it, `stop()` it."""

    def __init__(self, seed_namespace_contents: bool = True) -> None:
        self.store = Store(seed_namespace_contents=seed_namespace_contents)
        self.internal_errors: list[str] = []
        self._log: list[RequestRecord] = []
        self._faults: list[Rule] = []
        self._delays: list[Rule] = []
        self._hooks_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.store.events.close()   # open watch streams end
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Kubernetes API is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(kubeconfig_text(self.url))
        return path

    # ---- test hooks ---------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, methods: set[str] | None = None,
                  path_contains: str | None = None, message: str | None = None,
                  retry_after: int | None = None) -> None:
        """Answer the next `n` matching requests with a Status failure instead of serving them.

        `retry_after` adds the Retry-After header the server sends with 429s; note that urllib3
        then retries 429/503 by itself, sleeping that many seconds.
        """
        text = message or f"injected failure ({status}) by the test"
        rule = Rule(n, _methods(methods), path_contains, status=status, message=text, retry_after=retry_after)
        with self._hooks_lock:
            self._faults.append(rule)

    def cut_next(self, n: int = 1, methods: set[str] | None = None, path_contains: str | None = None,
                 served: bool = False) -> None:
        """Close the connection half-way through the answer to the next `n` matching requests: a
        proxy or the server going away mid-response. `served`: the request was carried out first
        (the change is made, the client never hears of it); else it never reached the store."""
        with self._hooks_lock:
            self._faults.append(Rule(n, _methods(methods), path_contains, cut="after" if served else "before"))

    def delay_next(self, n: int = 1, seconds: float = 0.5, methods: set[str] | None = None,
                   path_contains: str | None = None) -> None:
        with self._hooks_lock:
            self._delays.append(Rule(n, _methods(methods), path_contains, seconds=seconds))

    def hold_next(self, methods: set[str] | None = None, path_contains: str | None = None) -> Gate:
        """Hold the next matching request before it is served, until the returned gate is
        released: what happens meanwhile is ordered by the test, not by a sleep's length."""
        gate = Gate()
        with self._hooks_lock:
            self._delays.append(Rule(1, _methods(methods), path_contains, gate=gate))
        return gate

    @property
    def requests(self) -> list[RequestRecord]:
        with self._hooks_lock:
            return list(self._log)

    def writes(self) -> list[RequestRecord]:
        """Every request that asked to change something (all methods but GET/HEAD)."""
        return [record for record in self.requests if record.method not in READ_METHODS]

    def reset_log(self) -> None:
        with self._hooks_lock:
            self._log.clear()

    def store_get(self, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        """An object as stored, by resource plural, `plural.group` or kind; None when absent."""
        return self.store.peek(catalog.lookup(resource), namespace, name)

    def store_list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        listing = self.store.list_objects(catalog.lookup(resource), namespace, {})
        return [{"apiVersion": listing["apiVersion"], "kind": listing["kind"][:-4], **item}
                for item in listing["items"]]

    # ---- serving ------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        self._wait_if_delayed(request)
        response = self._injected_failure(request)
        if response is None:
            response = self._served(request)
        elif response.cut and response.changed:   # a cut after serving: serve, then cut the answer
            response = replace(self._served(request), cut=True)
        record = RequestRecord(request.method, request.path, dict(request.query), request.content_type,
                               response.code, request.field_manager if request.method not in READ_METHODS else "",
                               response.injected, response.changed)
        with self._hooks_lock:
            self._log.append(record)
        return response

    def _wait_if_delayed(self, request: Request) -> None:
        rule = self._take(self._delays, request)
        if rule is not None and rule.gate is not None:
            rule.gate.wait()
        elif rule is not None:
            time.sleep(rule.seconds)

    def _injected_failure(self, request: Request) -> Response | None:
        rule = self._take(self._faults, request)
        if rule is None:
            return None
        if rule.cut:   # `changed` marks the cut that serves the request first (see handle)
            return Response(500, {}, changed=rule.cut == "after", injected=True, cut=True)
        status = errors.from_code(rule.status, rule.message).status()
        if rule.retry_after is None:
            return Response(rule.status, status, injected=True)
        status.setdefault("details", {})["retryAfterSeconds"] = rule.retry_after
        return Response(rule.status, status, injected=True, headers={"Retry-After": str(rule.retry_after)})

    def _take(self, rules: list[Rule], request: Request) -> Rule | None:
        with self._hooks_lock:
            for rule in rules:
                if rule.matches(request):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        rules.remove(rule)
                    return rule
        return None

    def _served(self, request: Request) -> Response:
        try:
            return route(self.store, request, self.url.split("//", 1)[1])
        except errors.ApiError as error:
            return Response(error.code, error.status())
        except SelectorError as error:
            return Response(400, errors.bad_request(str(error)).status())
        except Exception as error:  # noqa: BLE001 - a bug in the double: answer as the server would, keep the trace
            self.internal_errors.append(traceback.format_exc())
            return Response(500, errors.from_code(500, f"test double failure: {error!r}").status())

def _methods(methods: set[str] | None) -> frozenset[str] | None:
    return frozenset(m.upper() for m in methods) if methods else None


def kubeconfig_text(url: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: meshc-test\n  cluster:\n    server: {url}\n"
        "contexts:\n- name: meshc-test\n  context:\n    cluster: meshc-test\n    user: meshc-test\n"
        "    namespace: default\n"
        "current-context: meshc-test\n"
        "users:\n- name: meshc-test\n  user:\n    token: test-double-token\n"
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: FakeKubeAPI) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)
        # serve_forever accepts when its selector says a connection is waiting; a client that gave
        # up meanwhile would leave a blocking accept() waiting for the next one, and shutdown()
        # waiting for it. Non-blocking, such an accept fails (OSError), which socketserver ignores.
        self.socket.setblocking(False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away before its answer was written (it timed out, or was cut off by
        a test) is not the double's failure; anything else is printed, as socketserver does."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Drop kept-alive client connections so their handler threads end with the server."""
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3 pools expect
    disable_nagle_algorithm = True  # headers and body go out in separate writes; don't stall on ACKs
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        request = Request(self.command, unquote(url.path), query, self.headers.get("Content-Type", ""), body,
                          self.headers.get("User-Agent", ""))
        response = self.server.api.handle(request)
        if response.stream is not None:
            self._send_stream(response)
            return
        payload = orjson.dumps(response.body)
        if response.cut:
            self._send_cut(response.code, payload)
            return
        self.send_response(response.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_cut(self, code: int, payload: bytes) -> None:
        """Headers announcing the whole body, half of it, then the connection closes."""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload) + 2))
        self.end_headers()
        self.wfile.write(payload[:len(payload) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_stream(self, response: Response) -> None:
        """A watch: chunked, one JSON event per line, flushed as each event happens."""
        assert response.stream is not None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            for event in response.stream:
                line = orjson.dumps(event) + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:   # the client went away
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass
