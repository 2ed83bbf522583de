"""A `--kubeconfig` that is not one: a usage error (exit 2) naming the file and what is wrong with it,
never a traceback or the client library's internals, never the file's content, and nothing written
to any other target of the same command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meshc.sync.kubeconfig import kubeconfig_problem
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.target import PermanentError
from tests.k8sapi.fixtures import KubeAPIHandle

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "examples" / "shop" / "mesh.yaml"
SECRET = "s3cr3t-t0ken-value"
CLUSTERS = "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
USERS = f"users: [{{name: u, user: {{token: {SECRET}}}}}]\n"


def _write(text: str) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        path = tmp_path / "kubeconfig"
        path.write_text(text)
        return str(path)
    return make


BAD: dict[str, tuple[Callable[[Path], str], str]] = {
    "passwd": (lambda _: "/etc/passwd", "it holds plain text, not a mapping with clusters, contexts and users"),
    "directory": (lambda tmp: str(tmp), "is a directory, not a kubeconfig file"),
    "device": (lambda _: os.devnull, "is a device or socket, not a kubeconfig file"),
    "absent": (lambda tmp: str(tmp / "absent"), "no such file"),
    "empty": (_write(""), "it holds nothing (an empty document)"),
    "a-list": (_write("- a\n- b\n"), "it holds a list"),
    "not-yaml": (_write(f"apiVersion: v1\nusers: [{{token: {SECRET}}}\n  : ]\n"), "it is not valid YAML (line 3"),
    "no-clusters": (_write("apiVersion: v1\nkind: Config\ncontexts: [{name: a, context: {cluster: c}}]\n" + USERS),
                    "it has no clusters"),
    "no-contexts": (_write("apiVersion: v1\nkind: Config\n" + CLUSTERS + USERS), "it has no contexts"),
    "no-current-context": (_write("kind: Config\n" + CLUSTERS + USERS + "contexts: [{name: a, context: {cluster: c}},"
                                  " {name: b, context: {cluster: c}}]\n"),
                           "sets no current-context: name one with --context (it has: a, b)"),
    "context-without-its-cluster": (_write("kind: Config\ncurrent-context: a\n" + CLUSTERS + USERS +
                                           "contexts: [{name: a, context: {cluster: gone, user: u}}]\n"),
                                    "context 'a' names cluster 'gone', which it does not have"),
    "cluster-without-server": (_write("kind: Config\ncurrent-context: a\nclusters: [{name: c, cluster: {}}]\n" + USERS +
                                      "contexts: [{name: a, context: {cluster: c, user: u}}]\n"),
                               "cluster 'c' (context 'a') has no server URL"),
    "context-without-its-user": (_write("kind: Config\ncurrent-context: a\n" + CLUSTERS + USERS +
                                        "contexts: [{name: a, context: {cluster: c, user: nobody}}]\n"),
                                 "context 'a' names user 'nobody', which it does not have"),
    "unknown-current-context": (_write("kind: Config\ncurrent-context: gone\n" + CLUSTERS + USERS +
                                       "contexts: [{name: a, context: {cluster: c, user: u}}]\n"),
                                "has no context named 'gone' (its current-context; it has: a)"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_file_that_is_no_kubeconfig_is_a_usage_error_that_says_why(name: str, tmp_path: Path) -> None:
    make, reason = BAD[name]
    kubeconfig = make(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "meshc.cli", "apply", str(SPEC), "--kubeconfig", kubeconfig,
                             "--output", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert f"meshc: error: cannot load kubeconfig {kubeconfig}: " in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr and "object" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert not out.exists()


def test_an_unknown_context_flag_names_the_contexts_there_are(kube_api: KubeAPIHandle) -> None:
    with pytest.raises(PermanentError, match=r"has no context named 'nope' \(--context; it has: "):
        KubernetesTarget.from_kubeconfig(str(kube_api.kubeconfig), "nope")


def test_an_unreadable_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission bits do not stop root (these tests may run as root): the open itself is made to
    fail as it does for a user without read access."""
    path = _write("kind: Config\n")(tmp_path)
    real_open = open

    def denied(file: object, *args: object, **kwargs: object) -> object:
        if file == path:
            raise PermissionError(13, "Permission denied", path)
        return real_open(file, *args, **kwargs)   # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", denied)
    assert kubeconfig_problem(path, None) == "cannot be read: Permission denied"


def test_a_pipe_is_left_to_the_library_which_reads_it_once(kube_api: KubeAPIHandle, tmp_path: Path) -> None:
    """`--kubeconfig <(vault read ...)` hands over a pipe: checking it first would drain it."""
    fifo = tmp_path / "kubeconfig-pipe"
    os.mkfifo(fifo)
    text = kube_api.kubeconfig.read_text()

    def feed() -> None:
        with open(fifo, "w") as pipe:
            pipe.write(text)

    import threading

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    target = KubernetesTarget.from_kubeconfig(str(fifo))
    try:
        assert target.description == str(fifo)
    finally:
        target.close()
        writer.join()


def test_the_double_s_kubeconfig_passes_the_checks(kube_api: KubeAPIHandle) -> None:
    assert kubeconfig_problem(str(kube_api.kubeconfig), None) is None
