"""Error output carries a status and a reason, never a raw body that may echo credentials: an API
server (or the proxy in front of it) answering with an HTML page that repeats the request's
Authorization header, as in the field."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from meshc.sync.scrub import scrub
from tests.support.ports import LOOPBACK
from tests.sync.specs import chain_spec

pytestmark = [pytest.mark.timeout(120)]
ROOT = Path(__file__).parents[2]
TOKEN = "s3cr3t-kube-t0ken-4f9a7c"


class EchoingProxy(BaseHTTPRequestHandler):
    """500 with an HTML page that shows the request's headers, token included."""

    def do_GET(self) -> None:
        body = f"<html><pre>Authorization: {self.headers.get('Authorization')}</pre></html>".encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy_kubeconfig(tmp_path: Path) -> Iterator[Path]:
    server = ThreadingHTTPServer((LOOPBACK, 0), EchoingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://{LOOPBACK}:{server.server_address[1]}"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def test_an_api_error_shows_status_and_reason_never_the_body(proxy_kubeconfig: Path, tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(chain_spec(1), sort_keys=False))
    for verb in ("apply", "plan"):
        result = subprocess.run([sys.executable, "-m", "meshc.cli", verb, str(spec), "--kubeconfig",
                                 str(proxy_kubeconfig)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 1
        assert "500 Internal Server Error" in result.stderr, result.stderr
        assert TOKEN not in result.stdout + result.stderr and "<html>" not in result.stderr


@pytest.mark.parametrize("text", [
    f"Authorization: Bearer {TOKEN}", f"token={TOKEN}&a=1", f'{{"password": "{TOKEN}"}}',
    f"https://bot:{TOKEN}@git.example/x.git", f"Bearer {TOKEN}", f"x-api-key: {TOKEN}",
])
def test_scrub_hides_secrets_in_text(text: str) -> None:
    assert TOKEN not in scrub(text) and "***" in scrub(text)


def test_scrub_keeps_ordinary_messages() -> None:
    message = 'deployments.apps "svc-000" is invalid: spec.replicas: Invalid value: -1'
    assert scrub(message) == message
