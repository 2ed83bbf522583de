"""A Git smart-HTTP server behind Basic authentication: real `git http-backend` (CGI) served from
a thread, answering 401 with a challenge until the right user and token come, as a forge does."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from tests.support.ports import LOOPBACK


class GitHTTPServer:
    """Serves every repository under `root` at http://127.0.0.1:PORT/<name>."""

    def __init__(self, root: Path, user: str, token: str) -> None:
        self.root, self.user, self.token = root, user, token
        self.authorized: list[str] = []       # paths served to the right credentials
        self.challenged = 0                   # requests answered 401
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def do_POST(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="git-http")

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, name: str, *, credentials: bool = True) -> str:
        auth = f"{self.user}:{self.token}@" if credentials else ""
        return f"http://{auth}{LOOPBACK}:{self.port}/{name}"

    def __enter__(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            self.challenged += 1
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        parts = urlsplit(request.path)
        self.authorized.append(parts.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        env = {**os.environ, "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": parts.path, "QUERY_STRING": parts.query, "REQUEST_METHOD": request.command,
               "CONTENT_TYPE": request.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_USER": self.user, "REMOTE_ADDR": LOOPBACK}
        if request.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        answer = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60,
                                check=False).stdout
        head, _, payload = answer.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)
