"""Reading mesh.yaml from a Git revision: blobs from the object database, never the work tree.

The work tree (and the index) of the repository may hold anything: uncommitted edits, another
branch checked out, or nothing at all in a bare repository. A build from `--rev X` must equal a
build of the file as committed at X, so only commit -> tree -> blob lookups are used here.
gitpython is imported lazily: only the verbs that read Git pay for it.
"""

from __future__ import annotations

import os
import posixpath
from types import TracebackType
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
        self._repo = _open_repository(path)

    def __enter__(self) -> GitSpecReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._repo.close()  # stops gitpython's persistent `git cat-file` helpers

    def resolve(self, rev: str) -> str:
        """The full sha of the commit `rev` names (a branch, tag, sha, `HEAD~2`, ...)."""
        return str(self._commit(rev).hexsha)

    def parents(self, rev: str) -> list[str]:
        """The full shas of the parents of the commit `rev` names."""
        return [str(parent.hexsha) for parent in self._commit(rev).parents]

    def read(self, rev: str, spec_path: str) -> SpecSource:
        commit = self._commit(rev)
        relpath = self.relative_path(spec_path)
        data = _blob_data(commit, relpath, rev)
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
    size = int(blob.size)
    if size > MAX_SPEC_BYTES:
        raise MeshcError([error("E009", f"{relpath} is {size} bytes; the limit is {MAX_SPEC_BYTES}", None)], 1)
    data: bytes = blob.data_stream.read()
    return data


def _stderr(exc: Exception) -> str:
    text = str(getattr(exc, "stderr", "") or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip()
