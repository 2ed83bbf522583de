"""Reading mesh.yaml from a Git revision: blobs from the object database, never the work tree.

The work tree (and the index) of the repository may hold anything: uncommitted edits, another
branch checked out, or nothing at all in a bare repository. A build from `--rev X` must equal a
build of the file as committed at X, so only commit -> tree -> blob lookups are used here.

Reading a spec that is there (the common case: every plan/apply --repo reads one or two) asks a
`git cat-file --batch` process of its own for the commit and the trees down to the file, without
importing gitpython (60-90 ms, and two `git version` runs, at import). Anything out of the
ordinary (no such revision or file, a directory, a submodule, a repository that is not one) is
read again with gitpython, whose answers make the error messages; so do the work tree and the
repository's layout (`read_work_tree`, absolute spec paths).
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from types import TracebackType
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from meshc.diagnostics import MeshcError, error
from meshc.load.source import MAX_SPEC_BYTES, SpecSource, read_spec_file

if TYPE_CHECKING:
    import git

EXIT_USAGE = 2
MAX_SYMLINK_HOPS = 8
_SYMLINK_MODE = 0o120000
_SUBMODULE_MODE = 0o160000


def read_spec_at_revision(repo: str, rev: str, spec_path: str) -> SpecSource:
    """The spec at `spec_path` (relative to the repository root) as committed at `rev`."""
    with GitSpecReader(repo) as reader:
        return reader.read(rev, spec_path)


class SpecNotInRevision(MeshcError):
    """The spec path names nothing in that revision's tree (a diff treats such a side as empty)."""


def _fail(message: str, hint: str | None = None) -> MeshcError:
    return MeshcError([error("E001", message, None, hint=hint)], EXIT_USAGE)


class GitSpecReader:
    """One opened repository from which specs are read at any number of revisions."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._objects = _ObjectReader.open(path)
        self._opened: git.Repo | None = None if self._objects is not None else _open_repository(path)

    @property
    def _repo(self) -> git.Repo:
        """gitpython's repository, opened when something beyond reading a spec needs it."""
        if self._opened is None:
            self._opened = _open_repository(self.path)
        return self._opened

    def __enter__(self) -> GitSpecReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._objects is not None:
            self._objects.close()
        if self._opened is not None:
            self._opened.close()  # stops gitpython's persistent `git cat-file` helpers

    def resolve(self, rev: str) -> str:
        """The full sha of the commit `rev` names (a branch, tag, sha, `HEAD~2`, ...)."""
        found = self._objects.commit(rev) if self._objects is not None else None
        return found.sha if found is not None else str(self._commit(rev).hexsha)

    def parents(self, rev: str) -> list[str]:
        """The full shas of the parents of the commit `rev` names."""
        found = self._objects.commit(rev) if self._objects is not None else None
        if found is not None:
            return list(found.parents)
        return [str(parent.hexsha) for parent in self._commit(rev).parents]

    def read(self, rev: str, spec_path: str) -> SpecSource:
        found = self._objects.commit(rev) if self._objects is not None else None
        if found is not None and self._objects is not None:
            relpath = self.relative_path(spec_path)
            blob = self._objects.file(found, relpath, rev)
            if blob is not None:
                return SpecSource(name=relpath, data=_limited(blob, relpath), revision=found.sha)
        commit = self._commit(rev)
        relpath = self.relative_path(spec_path)
        data = _readable(lambda: _blob_data(commit, relpath, rev), self.path, rev)
        return SpecSource(name=relpath, data=data, revision=str(commit.hexsha))

    def read_work_tree(self, spec_path: str) -> SpecSource | None:
        """The spec as it is in the work tree (edited, not yet committed), as `git diff` compares
        it; None when the file is not there."""
        work_tree = self._repo.working_tree_dir
        if work_tree is None:
            raise _fail(f"{self.path} is a bare repository: it has no work tree to compare with",
                        hint="name two revisions")
        relpath = self.relative_path(spec_path)
        try:
            source = read_spec_file(os.path.join(work_tree, *relpath.split("/")))
        except MeshcError as exc:
            if not os.path.lexists(os.path.join(work_tree, *relpath.split("/"))):
                return None
            raise exc from None
        return SpecSource(name=relpath, data=source.data)

    def relative_path(self, spec_path: str) -> str:
        """`spec_path` as a normalized path inside the repository; absolute paths must lie in its work tree."""
        path = spec_path.replace(os.sep, "/")
        if os.path.isabs(spec_path):
            path = self._relative_to_work_tree(spec_path)
        normalized = posixpath.normpath(path)
        if normalized in ("", "."):
            raise _fail(f"{spec_path}: names the repository root, not a spec file")
        if normalized == ".." or normalized.startswith("../"):
            raise _fail(f"{spec_path}: is outside the repository {self.path}",
                        hint="paths with --repo are relative to the repository root")
        return normalized

    def _relative_to_work_tree(self, spec_path: str) -> str:
        work_tree = self._repo.working_tree_dir
        if work_tree is None:
            raise _fail(f"{spec_path}: an absolute path cannot name a file in the bare repository {self.path}",
                        hint="give the path relative to the repository root, e.g. mesh.yaml")
        root = os.path.realpath(work_tree)
        # The file itself may not exist in the work tree (deleted, or another branch checked out):
        # resolve its directory, which holds any symlinked prefix such as /tmp -> /private/tmp.
        target = os.path.join(os.path.realpath(os.path.dirname(spec_path)), os.path.basename(spec_path))
        relative = os.path.relpath(target, root)
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            raise _fail(f"{spec_path}: is outside the repository {self.path} (work tree {root})",
                        hint="paths with --repo are relative to the repository root")
        return relative.replace(os.sep, "/")

    def _commit(self, rev: str) -> Any:
        import git

        if not rev or rev.startswith("-"):
            raise _fail(f"'{rev}' is not a revision")
        try:
            return self._repo.commit(rev)
        except (git.BadName, git.BadObject, git.exc.ODBError, ValueError, IndexError, TypeError):
            raise _fail(f"{self._what_rev_names(rev)}{_empty_note(self._repo)}",
                        hint="name a branch, tag or commit sha that exists in the repository") from None
        except git.GitCommandError as exc:
            raise _fail(f"git failed reading '{rev}' in {self.path}: {_stderr(exc)}") from None

    def _what_rev_names(self, rev: str) -> str:
        import git

        try:
            kind = self._repo.rev_parse(rev).type
        except git.exc.AmbiguousObjectName:
            return f"revision '{rev}' is ambiguous in {self.path}: give more digits of the sha"
        except Exception:  # noqa: BLE001 - any failure here means the name resolves to nothing
            return f"unknown revision '{rev}' in {self.path}"
        return f"revision '{rev}' names a {kind}, not a commit, in {self.path}"


def _open_repository(path: str) -> git.Repo:
    import git

    if not os.path.exists(path):
        raise _fail(f"{path}: no such directory (--repo)")
    if not os.path.isdir(path):
        raise _fail(f"{path}: is not a directory (--repo)")
    try:
        # No search upwards: `--repo DIR` names the repository itself, so a plain directory that
        # happens to sit inside some other checkout is still reported as "not a Git repository".
        return git.Repo(path, search_parent_directories=False)
    except git.InvalidGitRepositoryError:
        raise _fail(f"{path}: is not a Git repository (--repo)",
                    hint="give the directory that holds .git, or a bare repository") from None
    except git.NoSuchPathError:
        raise _fail(f"{path}: no such directory (--repo)") from None
    except git.GitCommandError as exc:
        raise _fail(f"{path}: git cannot open it: {_stderr(exc)}") from None


def _empty_note(repo: git.Repo) -> str:
    try:
        return "" if repo.head.is_valid() else " (the repository has no commits yet)"
    except Exception:  # noqa: BLE001 - only a nicer message is at stake
        return ""


def _readable(read: Callable[[], bytes], repo: str, rev: str) -> bytes:
    """What `read` reads from the object database, or a clear error when an object it needs is
    missing or damaged (a broken clone, a pruned or half-fetched repository): gitpython raises
    ValueError or an ODBError for those."""
    import git

    try:
        return read()
    except (ValueError, git.exc.ODBError) as exc:
        named = re.search(r"[0-9a-f]{40}", str(exc))
        what = f"object {named.group()}" if named else "an object"
        raise _fail(f"the repository {repo} is damaged: {what}, needed to read {rev}, is missing or unreadable",
                    hint="`git fsck` shows what is missing; fetch or clone the repository again") from None


def _blob_data(commit: Any, relpath: str, rev: str) -> bytes:
    """The bytes of the file at relpath in commit's tree, following in-tree symlinks."""
    short = str(commit.hexsha)[:12]
    seen: list[str] = []
    path = relpath
    while True:
        obj = _lookup(commit, path, relpath, rev)
        mode = int(obj.mode)
        if obj.type == "tree":
            raise _fail(f"{relpath}: is a directory at {rev} ({short}), not a spec file")
        if mode == _SUBMODULE_MODE or obj.type != "blob":
            raise _fail(f"{relpath}: is a submodule at {rev} ({short}), not a spec file")
        if mode != _SYMLINK_MODE:
            return _checked_size(obj, relpath)
        seen.append(path)
        if len(seen) > MAX_SYMLINK_HOPS:
            raise _fail(f"{relpath}: too many levels of symbolic links at {rev} ({short})")
        path = _follow_link(path, obj.data_stream.read().decode("utf-8", "replace"), relpath, rev)


def _lookup(commit: Any, path: str, relpath: str, rev: str) -> Any:
    try:
        return commit.tree / path
    except KeyError:
        short = str(commit.hexsha)[:12]
        which = relpath if path == relpath else f"{relpath} (a symbolic link to {path})"
        raise SpecNotInRevision([error("E001", f"{which}: no such file at {rev} ({short})", None,
                                       hint="the path is relative to the repository root; "
                                       f"`git ls-tree -r --name-only {short}` lists the files")],
                                EXIT_USAGE) from None


def _follow_link(link_path: str, target: str, relpath: str, rev: str) -> str:
    if posixpath.isabs(target):
        raise _fail(f"{relpath}: is a symbolic link to {target}, outside the repository, at {rev}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise _fail(f"{relpath}: is a symbolic link to {target}, outside the repository, at {rev}")
    return resolved


def _checked_size(blob: Any, relpath: str) -> bytes:
    _check_size(int(blob.size), relpath)
    data: bytes = blob.data_stream.read()
    return data


def _limited(data: bytes, relpath: str) -> bytes:
    _check_size(len(data), relpath)
    return data


def _check_size(size: int, relpath: str) -> None:
    if size > MAX_SPEC_BYTES:
        raise MeshcError([error("E009", f"{relpath} is {size} bytes; the limit is {MAX_SPEC_BYTES}", None)], 1)


class _Commit:
    def __init__(self, sha: str, tree: str, parents: list[str]) -> None:
        self.sha, self.tree, self.parents = sha, tree, parents


class _ObjectReader:
    """Commits, trees and blobs from one `git cat-file --batch` process: the fast path of
    GitSpecReader. Each question answers None whenever the answer is not a plain one (a name
    that resolves to nothing or to several objects, a missing file, a directory, a submodule):
    the caller then asks gitpython, whose answer makes the error message."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @classmethod
    def open(cls, path: str) -> _ObjectReader | None:
        """A reader of the repository at `path` itself (never one found in a parent directory, as
        `--repo DIR` names the repository); None when `path` is not plainly one."""
        if not os.path.isdir(path):
            return None
        try:
            found = subprocess.run(["git", "-C", path, "rev-parse", "--show-object-format", "--is-bare-repository",
                                    "--absolute-git-dir"], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        lines = found.stdout.decode("utf-8", "surrogateescape").splitlines()
        if found.returncode != 0 or len(lines) != 3 or lines[0] != "sha1":   # trees hold 20-byte ids
            return None
        bare, git_dir = lines[1] == "true", os.path.realpath(lines[2])
        if os.path.realpath(path) != (git_dir if bare else os.path.dirname(git_dir)):
            return None
        try:
            process = subprocess.Popen(["git", "-C", path, "cat-file", "--batch"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            return None
        return cls(process)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def commit(self, rev: str) -> _Commit | None:
        if not rev or rev.startswith("-") or any(c in rev for c in "\n\r\0"):
            return None
        found = self._object(f"{rev}^{{commit}}")
        if found is None or found[1] != "commit":
            return None
        sha, _, body = found
        headers = body.split(b"\n\n", 1)[0].split(b"\n")
        tree = [line[5:].decode() for line in headers if line.startswith(b"tree ")]
        parents = [line[7:].decode() for line in headers if line.startswith(b"parent ")]
        return _Commit(sha, tree[0], parents) if len(tree) == 1 else None

    def file(self, commit: _Commit, relpath: str, rev: str) -> bytes | None:
        """The bytes of `relpath` in `commit` (named `rev`), following in-tree symbolic links as
        _blob_data does."""
        path, hops = relpath, 0
        while True:
            entry = self._entry(commit.tree, path)
            if entry is None:
                return None
            mode, sha = entry
            if mode == _SYMLINK_MODE:
                hops += 1
                target = self._object(sha)
                if target is None or hops > MAX_SYMLINK_HOPS:
                    return None
                path = _follow_link(path, target[2].decode("utf-8", "replace"), relpath, rev)
                continue
            if mode & 0o170000 != 0o100000:     # a directory or a submodule: gitpython says which
                return None
            blob = self._object(sha, limit=MAX_SPEC_BYTES)    # over it: gitpython says so, reading nothing
            return blob[2] if blob is not None and blob[1] == "blob" else None

    def _entry(self, tree: str, path: str) -> tuple[int, str] | None:
        """The mode and sha of `path` under `tree`."""
        entry: tuple[int, str] | None = (0o040000, tree)
        for name in path.split("/"):
            if entry is None or entry[0] != 0o040000:
                return None
            found = self._object(entry[1])
            if found is None or found[1] != "tree":
                return None
            entry = _tree_entries(found[2]).get(name.encode("utf-8", "surrogateescape"))
        return entry

    def _object(self, name: str, limit: int | None = None) -> tuple[str, str, bytes] | None:
        """(sha, type, content) of the object `name` names; None when it names none, or several,
        or its content is over `limit` bytes (read past, not kept)."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3:        # `<name> missing`, `<name> ambiguous`
            return None
        size = int(header[2])
        if limit is not None and size > limit:
            while size > 0:
                chunk = stdout.read(min(size, 1 << 20))
                if not chunk:
                    break
                size -= len(chunk)
            stdout.read(1)
            return None
        content = stdout.read(size)
        stdout.read(1)              # the newline after the content
        return header[0].decode(), header[1].decode(), content


def _tree_entries(data: bytes) -> dict[bytes, tuple[int, str]]:
    """A tree object's entries (`<octal mode> <name>\\0<20-byte sha>` each) by name."""
    entries: dict[bytes, tuple[int, str]] = {}
    position = 0
    while position < len(data):
        space = data.index(b" ", position)
        nul = data.index(b"\0", space)
        entries[data[space + 1:nul]] = (int(data[position:space], 8), data[nul + 1:nul + 21].hex())
        position = nul + 21
    return entries


def _stderr(exc: Exception) -> str:
    text = str(getattr(exc, "stderr", "") or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip()
