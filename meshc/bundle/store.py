"""Writing a bundle to a directory atomically, and reading one back."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import orjson

from meshc.bundle.bundle import Bundle, FileEntry
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
    """Write every file of a bundle into OUT atomically (see StagedOutput)."""
    with StagedOutput(out) as staged:
        for rel, data in bundle.files.items():
            staged.write(rel, data)
        staged.commit()


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def write_file(path: str, data: bytes) -> None:
    """Create (or truncate) a file and write data to it: a file descriptor and os.write, without
    the buffered file object `open()` builds around it (a third of the CPU time of writing a
    large build's thousands of files when creating them is cheap)."""
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def checked_target(out: str | os.PathLike[str]) -> Path:
    """The directory OUT stands for, once it is known that it may be replaced.

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
    above = next((parent for parent in target.parents if parent.exists()), None)
    if above is not None and not above.is_dir():   # else mkdir says "File exists", naming the file
        raise BundleWriteError(f"{above} is not a directory, so {target} cannot be made inside it")
    if target.is_dir() and any(target.iterdir()) and not is_meshc_output(target):
        raise BundleWriteError(f"{target} is not empty and does not hold a previous meshc build; refusing to "
                               "replace it")
    return target


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM back while something that needs cleaning up is created and recorded
    where the cleanup will find it (a directory, a worker process). The KeyboardInterrupt then
    arrives as the block ends, not in between. Python runs handlers in the main thread only, and meshc's
    other threads start with both signals blocked (meshc.threads), so none can take one meanwhile."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})   # meshc.cli: both interrupt
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _make_directory(root: str, rel: str) -> None:
    """Create root/rel (and missing parents), which may exist already (another writer made it).
    One mkdir when the parent exists, as it mostly does, where os.makedirs would stat it first."""
    if not rel:
        return
    try:
        os.mkdir(f"{root}/{rel}")
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(f"{root}/{rel}", exist_ok=True)


class StagedOutput:
    """An output directory being replaced: files are written into a fresh sibling directory as
    they are handed over, and commit() swaps it in for OUT in one rename. Leaving the `with` block
    without commit() removes the staging directory, so OUT is then exactly as it was.

    Files can be written from forked processes too (meshc.bundle.shards): the staging directory
    is on disk, and each writer creates the directories it needs."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.target = checked_target(out)
        self._staging: Path | None = None
        self._root: str | None = None    # the staging directory as a string, to prefix file paths with
        self._made: set[str] = set()
        self._committed = False

    def __enter__(self) -> Self:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.target)
        try:
            with interrupts_deferred():  # a Ctrl-C must not fall between creating and recording it
                self._staging = Path(tempfile.mkdtemp(prefix=staging_prefix(self.target, "new"),
                                                      dir=self.target.parent))
            self._root = str(self._staging)
            return self
        except BaseException:
            # A Ctrl-C held back above is raised once the block ends, still inside __enter__,
            # where no __exit__ follows: remove what was made here.
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: object) -> None:
        if not self._committed and self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    @property
    def staging(self) -> Path:
        if self._staging is None:
            raise RuntimeError("StagedOutput is used outside its with block")
        return self._staging

    def write(self, rel: str, data: bytes) -> FileEntry:
        """Write one file (a path relative to OUT); what the manifest records of it."""
        root = self._root or str(self.staging)
        parent = rel.rpartition("/")[0]
        if parent not in self._made:
            _make_directory(root, parent)
            self._made.add(parent)
        # Plain concatenation, not os.path.join: rel is relative and '/'-separated (a bundle path),
        # and this runs once per file of a build that writes thousands.
        write_file(f"{root}/{rel}", data)
        return FileEntry.of(data)

    def commit(self) -> None:
        """Put the new tree in OUT's place."""
        os.chmod(self.staging, 0o755)
        _swap(self.staging, self.target)
        self._committed = True


# ---- staging directories and their owners ---------------------------------------------------------
# A staging directory is named `.OUT.new-<pid>-<start>-<random>` (`.old-` for the previous tree
# set aside during a swap): the process that made it, and when that process started, so that a
# later build can tell a directory whose owner died (SIGKILL, OOM, power loss) from one that a
# running build is still writing, even after the pid was reused.


def staging_prefix(target: Path, kind: str) -> str:
    pid = os.getpid()
    return f".{target.name}.{kind}-{pid}-{_process_start(pid) or 0}-"


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging directories of OUT that meshc made and no live process owns; return them.
    Directories of other names, or whose owner still runs, are left alone."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:new|old)-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+$")
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        if _owner_alive(int(match["pid"]), int(match["start"])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _owner_alive(pid: int, start: int) -> bool:
    """The process `pid` runs and is the one that started at `start` (clock ticks after boot)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass            # it exists, someone else's
    now = _process_start(pid)
    return now is None or start == 0 or now == start


def _process_start(pid: int) -> int | None:
    """When the process started, from /proc/<pid>/stat (field 22); None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def _swap(staging: Path, target: Path) -> None:
    """Replace target by staging: an atomic exchange where the kernel offers one (renameat2
    RENAME_EXCHANGE), else rename the old tree aside and the new one in (briefly absent)."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old tree
        return
    old = Path(tempfile.mkdtemp(prefix=staging_prefix(target, "old"), dir=target.parent))
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
    import ctypes   # only to replace an existing output: a first build does not pay for it

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
