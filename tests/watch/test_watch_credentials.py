"""Credentials of a tokened Git URL never show: not on any git command line (what `ps` and
/proc/<pid>/cmdline show every local user), not in the log, errors, metrics or the mirror's config.
A real `git http-backend` behind Basic authentication serves the repository."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.gitrepo import GitRepo
from tests.support.httpclient import http_get
from tests.watch.git_http import GitHTTPServer
from tests.watch.harness import WatchProcess

pytestmark = [pytest.mark.timeout(120)]
USER, TOKEN = "deploy-bot", "ghp_s3cr3tT0ken0f40charsXXXXXXXXXXXXXXXXX"


def git_wrapper(directory: Path, log: Path) -> dict[str, str]:
    """A `git` first on PATH that records each command line it is run with, then runs git."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "git"
    real = "/usr/bin/git" if os.path.exists("/usr/bin/git") else "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def test_a_tokened_url_is_fetched_without_the_token_on_any_command_line(mesh_repo: GitRepo, tmp_path: Path) -> None:
    mesh_repo.clone_bare(tmp_path / "served" / "mesh.git")
    argv_log = tmp_path / "git-argv.log"
    env = git_wrapper(tmp_path / "bin", argv_log)
    cache = tmp_path / "cache"
    with GitHTTPServer(tmp_path / "served", USER, TOKEN) as server:
        watch = WatchProcess(tmp_path / "watch", ["--repo", server.url("mesh.git"), "--interval", "0.2s",
                                                  "--output", str(tmp_path / "out"), "--cache-dir", str(cache),
                                                  "--metrics-addr", "127.0.0.1:0"], env=env).start()
        try:
            watch.wait("applied", commit=mesh_repo.head_sha)
            address = watch.wait("metrics")["address"]
            metrics = http_get(f"http://{address}/metrics", timeout=5.0).body.decode()
        finally:
            watch.stop()
        wrong = WatchProcess(tmp_path / "wrong", ["--repo", server.url("mesh.git").replace(TOKEN, TOKEN[:-4] + "nope"),
                                                  "--once", "--output", str(tmp_path / "out2"),
                                                  "--cache-dir", str(tmp_path / "cache2")], env=env).start()
        assert wrong.wait_exit() != 0
    assert server.challenged >= 1 and any(path.endswith("/git-upload-pack") for path in server.authorized)
    fetches = [line for line in argv_log.read_text().splitlines() if " fetch " in f" {line} "]
    assert fetches and all(f"127.0.0.1:{server.port}/mesh.git" in line for line in fetches)
    outputs = {"git command lines": argv_log.read_text(), "metrics": metrics,
               "log": watch.stdout_path.read_text(), "stderr": watch.stderr_path.read_text(),
               "failed log": wrong.stdout_path.read_text() + wrong.stderr_path.read_text(),
               "mirror config": "".join(p.read_text() for p in cache.glob("*/config"))}
    for where, text in outputs.items():
        assert TOKEN not in text and TOKEN[:-4] not in text, f"the token shows in the {where}"
    assert "sync_" in metrics or "meshc" in metrics       # the metrics page was really read


def test_credentials_from_the_environment_with_a_plain_url(mesh_repo: GitRepo, tmp_path: Path) -> None:
    """The URL (on watch's own command line) holds no secret at all: the token comes from a Secret
    mounted as MESHC_GIT_PASSWORD."""
    mesh_repo.clone_bare(tmp_path / "served" / "mesh.git")
    argv_log = tmp_path / "git-argv.log"
    env = {**git_wrapper(tmp_path / "bin", argv_log), "MESHC_GIT_USERNAME": USER, "MESHC_GIT_PASSWORD": TOKEN}
    with GitHTTPServer(tmp_path / "served", USER, TOKEN) as server:
        watch = WatchProcess(tmp_path / "watch", ["--repo", server.url("mesh.git", credentials=False), "--once",
                                                  "--output", str(tmp_path / "out"), "--cache-dir",
                                                  str(tmp_path / "cache")], env=env).start()
        assert watch.wait_exit() == 0, watch.process.log_tail()
    assert (tmp_path / "out" / "manifest.json").exists()
    assert TOKEN not in argv_log.read_text() + watch.stdout_path.read_text() + watch.stderr_path.read_text()
