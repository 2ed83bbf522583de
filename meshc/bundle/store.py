"""Writing a bundle to a directory atomically, and reading one back."""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path

import orjson

from meshc.bundle.bundle import Bundle
from meshc.emit.naming import MANIFEST_PATH


class BundleWriteError(Exception):
    """The output directory cannot be (re)placed; nothing was changed."""


def is_meshc_output(directory: Path) -> bool:
    manifest = directory / MANIFEST_PATH
    try:
        return bool(orjson.loads(manifest.read_bytes()).get("kind") == "BuildManifest")
    except (OSError, ValueError, AttributeError):
        return False


def write_bundle(bundle: Bundle, out: str | os.PathLike[str]) -> None:
    """Write every file into a fresh sibling directory, then swap it in by rename.

    A previous output is replaced only when it is one (it has meshc's manifest): a non-empty
    directory of something else is refused, so a mistyped -o cannot wipe a user's files.
    """
    target = Path(out).absolute()
    if target.is_symlink():
        # Replace the directory the link points to, and keep the link: swapping the link itself
        # would turn it into a plain directory and leave the old tree (and a stray link) behind.
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise BundleWriteError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not is_meshc_output(target):
        raise BundleWriteError(f"{target} is not empty and does not hold a previous meshc build; refusing to "
                               "replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        _write_files(bundle, staging)
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_files(bundle: Bundle, root: Path) -> None:
    made: set[Path] = set()
    for rel, data in bundle.files.items():
        path = root / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as handle:
            handle.write(data)
    os.chmod(root, 0o755)


def _swap(staging: Path, target: Path) -> None:
    """Replace target by staging: an atomic exchange where the kernel offers one (renameat2
    RENAME_EXCHANGE), else rename the old tree aside and the new one in (briefly absent)."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old tree
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


def read_bundle(directory: str | os.PathLike[str]) -> Bundle:
    root = Path(directory)
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return Bundle(files)
