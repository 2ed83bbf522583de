"""The Kubernetes client library as the sync verbs load it: only the parts a target uses
(meshc.sync.kubernetes._import_client_library), with every kind of credential a kubeconfig or a
pod's service account gives still reaching the API server, and the whole library still
importable by anything else in the process."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.server import FakeKubeAPI, _Handler, _Server
from tests.support.etcd import EtcdTls, make_tls
from tests.sync.specs import chain_spec

pytestmark = [pytest.mark.timeout(120)]
ROOT = Path(__file__).parents[2]
TOKEN = "kube-t0ken-7c1e"
# What the library's package `__init__` imports that no target needs.
NOT_NEEDED = ("kubernetes.stream", "websocket", "kubernetes.leaderelection", "kubernetes.informer",
              "kubernetes_validate", "jsonschema")


def run_python(code: str, **env: str) -> dict[str, Any]:
    """Run `code` in a fresh interpreter (this checkout first on the path); it prints one JSON line."""
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=90,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


# ---- a meshc process loads only what it uses, and the rest of the library stays usable ------------

PLAN_THEN_USE_THE_WHOLE_LIBRARY = """
import contextlib, io, json, sys
from meshc.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:] or {argv!r})
loaded = sorted(m for m in {not_needed!r} + ("kubernetes.config.kube_config",) if m in sys.modules)
# Anything else in the process still gets the whole library, as `import kubernetes` always gave it.
import kubernetes
from kubernetes import config, leaderelection, stream, watch
import kubernetes_validate
print(json.dumps({{"code": code, "out": out.getvalue(), "loaded": loaded, "version": kubernetes.__version__,
                  "whole": [callable(config.load_kube_config), callable(config.load_incluster_config),
                            hasattr(kubernetes, "informer"), hasattr(kubernetes.utils, "create_from_yaml"),
                            hasattr(stream, "stream"), hasattr(watch, "Watch"), hasattr(leaderelection, "__path__"),
                            callable(kubernetes_validate.validate)]}}))
"""


def test_a_plan_imports_only_what_a_target_uses_and_the_library_stays_whole(
        tmp_path: Path, kube_api: KubeAPIHandle) -> None:
    from importlib.metadata import version

    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(chain_spec(2), sort_keys=False))
    argv = ["plan", str(spec), "--kubeconfig", str(kube_api.kubeconfig)]
    answer = run_python(PLAN_THEN_USE_THE_WHOLE_LIBRARY.format(argv=argv, not_needed=NOT_NEEDED))
    assert answer["code"] == 0 and "to create" in answer["out"]
    assert answer["loaded"] == ["kubernetes.config.kube_config"]   # none of what a target does not use
    assert answer["version"] == version("kubernetes")
    assert answer["whole"] == [True] * 8


IN_CLUSTER_FAILURE = """
import contextlib, io, json, sys
from meshc.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["plan", {spec!r}, "--in-cluster"])
print(json.dumps({{"code": code, "err": err.getvalue(),
                  "loaded": sorted(m for m in ("kubernetes.config.incluster_config", "kubernetes.config.kube_config",
                                               "oauthlib") if m in sys.modules)}}))
"""


def test_in_cluster_loads_the_service_account_loader_alone(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(chain_spec(1), sort_keys=False))
    answer = run_python(IN_CLUSTER_FAILURE.format(spec=str(spec)), KUBERNETES_SERVICE_HOST="", KUBERNETES_SERVICE_PORT="")
    assert answer["code"] == 2
    assert "cannot load the in-cluster service account" in answer["err"]
    assert answer["loaded"] == ["kubernetes.config.incluster_config"]


# ---- credentials: tokens, client certificates, exec plugins, the service account -------------------

class _RecordingHandler(_Handler):
    """The double's handler, noting each request's credentials: its bearer token and client certificate."""

    def _serve(self) -> None:
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        api: TlsKubeAPI = self.server.api   # type: ignore[assignment]
        api.seen.append((self.headers.get("Authorization"), subject.get("commonName")))
        super()._serve()


class TlsKubeAPI(FakeKubeAPI):
    """The API double over TLS (the test PKI's server certificate), asking for a client
    certificate without requiring one, and noting the credentials of every request."""

    def __init__(self, tls: EtcdTls) -> None:
        super().__init__()
        self.tls = tls
        self.seen: list[tuple[str | None, str | None]] = []

    def start(self) -> TlsKubeAPI:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.tls.ca))
        context.load_cert_chain(str(self.tls.server_cert), str(self.tls.server_key))
        context.verify_mode = ssl.CERT_OPTIONAL
        server = _Server(("127.0.0.1", 0), _RecordingHandler, self)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://")


@pytest.fixture
def tls(tmp_path: Path) -> EtcdTls:
    return make_tls(tmp_path / "pki", client_common_name="meshc-deployer")


@pytest.fixture
def tls_api(tls: EtcdTls) -> Iterator[TlsKubeAPI]:
    api = TlsKubeAPI(tls).start()
    try:
        yield api
    finally:
        api.stop()


def kubeconfig(path: Path, server: str, ca: Path, user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def plan(tmp_path: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(chain_spec(1), sort_keys=False))
    return subprocess.run([sys.executable, "-m", "meshc.cli", "plan", str(spec), *targets],
                          capture_output=True, text=True, cwd=ROOT, timeout=90)


def test_a_kubeconfig_token_is_sent(tmp_path: Path, tls_api: TlsKubeAPI, tls: EtcdTls) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", tls_api.url, tls.ca, {"token": TOKEN})
    result = plan(tmp_path, "--kubeconfig", str(config))
    assert result.returncode == 0, result.stderr
    assert tls_api.seen and set(tls_api.seen) == {(f"Bearer {TOKEN}", None)}


def test_a_kubeconfig_client_certificate_is_presented(tmp_path: Path, tls_api: TlsKubeAPI, tls: EtcdTls) -> None:
    inline_key = base64.b64encode(tls.client_key.read_bytes()).decode()
    config = kubeconfig(tmp_path / "kubeconfig", tls_api.url, tls.ca,
                        {"client-certificate": str(tls.client_cert), "client-key-data": inline_key})
    result = plan(tmp_path, "--kubeconfig", str(config))
    assert result.returncode == 0, result.stderr
    assert tls_api.seen and set(tls_api.seen) == {(None, "meshc-deployer")}


def test_a_kubeconfig_exec_plugin_gives_the_token(tmp_path: Path, tls_api: TlsKubeAPI, tls: EtcdTls) -> None:
    plugin = tmp_path / "credential.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', "
                      f"'kind': 'ExecCredential', 'status': {{'token': 'exec-{TOKEN}'}}}}))\n")
    config = kubeconfig(tmp_path / "kubeconfig", tls_api.url, tls.ca, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable, "args": [str(plugin)]}})
    result = plan(tmp_path, "--kubeconfig", str(config))
    assert result.returncode == 0, result.stderr
    assert tls_api.seen and set(tls_api.seen) == {(f"Bearer exec-{TOKEN}", None)}


def test_a_wrong_certificate_authority_is_refused(tmp_path: Path, tls_api: TlsKubeAPI) -> None:
    other = make_tls(tmp_path / "other-pki")
    config = kubeconfig(tmp_path / "kubeconfig", tls_api.url, other.ca, {"token": TOKEN})
    result = plan(tmp_path, "--kubeconfig", str(config))
    assert result.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert tls_api.seen == []


IN_CLUSTER = """
import contextlib, io, json, sys
from meshc.sync import kubernetes as target
target._import_client_library(in_cluster=True)
# The library reads the service account from fixed paths in the pod: this test's files instead.
from kubernetes.config import incluster_config
incluster_config.SERVICE_TOKEN_FILENAME, incluster_config.SERVICE_CERT_FILENAME = sys.argv[1:3]
from meshc.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = main(["plan", sys.argv[3], "--in-cluster"])
print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                  "kube_config": "kubernetes.config.kube_config" in sys.modules}))
"""


def test_the_in_cluster_service_account_token_and_ca_are_used(tmp_path: Path, tls_api: TlsKubeAPI,
                                                               tls: EtcdTls) -> None:
    import os

    token = tmp_path / "token"
    token.write_text(f"sa-{TOKEN}")    # as in a pod: no newline (the library sends the file as it is)
    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(chain_spec(1), sort_keys=False))
    host, port = tls_api.url.removeprefix("https://").rsplit(":", 1)
    result = subprocess.run([sys.executable, "-c", IN_CLUSTER, str(token), str(tls.ca), str(spec)],
                            capture_output=True, text=True, cwd=ROOT, timeout=90,
                            env={**os.environ, "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port})
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["code"] == 0 and "to create" in answer["out"], answer["err"]
    assert answer["kube_config"] is False
    assert tls_api.seen and set(tls_api.seen) == {(f"bearer sa-{TOKEN}", None)}
