"""A build killed outright (SIGKILL: no cleanup runs) leaves its staging directory beside OUT; the
next build removes it, because the directory names its owner and that process is gone. Staging
directories of a build that still runs, and directories meshc did not name, are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import gen_mesh
from meshc.bundle.store import _process_start, remove_stale_staging
from tests.build.tree import ROOT, meshc

pytestmark = [pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process start times in /proc"),
              pytest.mark.timeout(180)]


def staging_dirs(parent: Path, name: str = "out") -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(f".{name}.new-") or p.name.startswith(f".{name}.old-"))


def wait_until_writing(build: subprocess.Popen[Any], parent: Path) -> None:
    """Until the build writes files into its staging directory in `parent` (or ends, or a minute
    has passed)."""
    deadline = time.monotonic() + 60
    while build.poll() is None and time.monotonic() < deadline:
        staged = staging_dirs(parent)
        if staged and any(staged[0].rglob("*.yaml")):
            return
        time.sleep(0.005)


def test_the_staging_directory_of_a_killed_build_is_removed_by_the_next_build(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(gen_mesh.generate(600, seed=3))
    out = tmp_path / "out"
    build = subprocess.Popen([sys.executable, "-m", "meshc.cli", "build", str(spec), "-o", str(out), "--jobs", "1"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_writing(build, tmp_path)
        build.send_signal(signal.SIGKILL)
    finally:
        build.kill()
        build.wait()
    left = staging_dirs(tmp_path)
    if not left:
        pytest.skip("the build finished before it could be killed")
    assert build.returncode == -signal.SIGKILL
    assert left[0].name.startswith(f".out.new-{build.pid}-")     # it names its owner

    rebuilt = meshc("build", str(spec), "-o", str(out))

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert staging_dirs(tmp_path) == []
    assert (out / "manifest.json").exists()


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "meshc: terminated"),
                                                   (signal.SIGINT, 130, "meshc: interrupted")])
def test_a_build_stopped_by_sigterm_or_sigint_cleans_up_after_itself(tmp_path: Path, sig: signal.Signals,
                                                                   code: int, said: str) -> None:
    """SIGTERM (a cancelled CI job, `timeout`) is caught as Ctrl-C is: the staging directory and
    the workers go, and OUT stays exactly as it was (here: absent)."""
    spec = tmp_path / "mesh.yaml"
    spec.write_text(gen_mesh.generate(600, seed=3))
    out = tmp_path / "out"
    build = subprocess.Popen([sys.executable, "-m", "meshc.cli", "build", str(spec), "-o", str(out), "--jobs", "2"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_writing(build, tmp_path)
        build.send_signal(sig)
        _, stderr = build.communicate(timeout=60)
    finally:
        build.kill()
        build.wait()
    if build.returncode == 0:
        pytest.skip("the build finished before the signal came")
    assert build.returncode == code, stderr
    assert said in stderr and "Traceback" not in stderr
    assert staging_dirs(tmp_path) == [] and not out.exists()
    # forked workers carry the parent's command line, which names this test's own spec
    workers = subprocess.run(["pgrep", "-f", str(spec)], capture_output=True, text=True).stdout
    assert workers == ""


def test_staging_directories_of_live_builds_and_of_others_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = tmp_path / f".out.new-{sleeper.pid}-{_process_start(sleeper.pid)}-abc123"
        reused_pid = tmp_path / f".out.new-{sleeper.pid}-{(_process_start(sleeper.pid) or 0) + 1}-abc123"
        unnamed = tmp_path / ".out.new-x1y2z3"            # no owner recorded: not provably stale
        other = tmp_path / f".other.new-{2**22 + 7}-1-abc123"
        for directory in (live, reused_pid, unnamed, other):
            directory.mkdir()

        removed = remove_stale_staging(out)

        assert removed == [reused_pid]             # same pid, another process: its owner is gone
        assert live.is_dir() and unnamed.is_dir() and other.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_staging(out) == [live]      # once its owner has ended
    assert os.path.isdir(unnamed)
