"""Looking at output directories: their files' bytes, and everything that would show a change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from meshc.bundle import Bundle, read_bundle
from meshc.load import SpecSource, read_spec_file
from meshc.pipeline import compile

ROOT = Path(__file__).parents[2]


def files(directory: Path) -> dict[str, bytes]:
    return dict(read_bundle(directory).files)


def snapshot(directory: Path) -> dict[str, tuple[str, int, int, int, bytes]]:
    """Every entry under a directory (itself included) with type, inode, mode, mtime and content."""
    entries = {}
    for path in [directory, *sorted(directory.rglob("*"))]:
        st = path.lstat()
        kind = "dir" if path.is_dir() else "file"
        content = path.read_bytes() if kind == "file" else b""
        entries[path.relative_to(directory).as_posix()] = (kind, st.st_ino, st.st_mode, st.st_mtime_ns, content)
    return entries


def compiled(spec: Path | SpecSource) -> Bundle:
    source = spec if isinstance(spec, SpecSource) else read_spec_file(str(spec))
    result = compile(source)
    assert result.bundle is not None, [str(d) for d in result.diagnostics]
    return result.bundle


def meshc(*args: str, seed: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh interpreter (optionally with a fixed PYTHONHASHSEED)."""
    env = dict(os.environ)
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
