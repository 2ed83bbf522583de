"""The directory target (`--output DIR`): keep DIR equal to the bundle's files, file by file.

Each changed file is written beside itself and renamed into place, so an Envoy watching
`envoy/<service>/` sees a MOVE and hot-reloads. Unchanged files are not touched. DIR/manifest.json
— the bundle's own manifest — records which files meshc wrote and the revision they came from:
only those files are ever replaced or deleted; anything else in DIR is left alone. A new commit
that changes no file rewrites only manifest.json; syncing the same commit again writes nothing.

Given the previous bundle, and when DIR/manifest.json is still exactly that bundle's, a plan
reads only the files that differ between the two bundles instead of every file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import orjson

from meshc.bundle import Bundle
from meshc.emit.naming import ETCD_SEED_PATH, KUSTOMIZATION_PATH, MANIFEST_PATH, NAMESPACE_PATH
from meshc.sync.delta import file_delta
from meshc.sync.target import (
    Action, ApplyResult, Change, Interrupt, PermanentError, Plan, StalePlan, SyncError, TransientError,
)

NAME = "directory"
# Files every bundle has whatever its services: deleting all the others empties the mesh.
_MESH_LEVEL_FILES = frozenset({MANIFEST_PATH, ETCD_SEED_PATH, NAMESPACE_PATH, KUSTOMIZATION_PATH})
# A full disk, a quota, a file-size limit, no file descriptors or memory left: the file system is
# fine and another try may succeed once space is freed, as with a 5xx from an API (retry, backoff).
_EXHAUSTED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.ENOMEM})


class DirectoryTarget:
    """A local directory, e.g. the config dir of Envoys on plain hosts."""

    name = NAME

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._check_root()

    def _check_root(self) -> None:
        """DIR may not exist yet (the first write makes it), but what is there must be a directory:
        `--output /dev/null` or a file would otherwise plan every file and fail to write the first."""
        try:
            info = self.root.stat()
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise PermanentError(f"output directory {self.root}: a part of the path is a file, not a "
                                 "directory") from None
        except OSError as error:
            raise PermanentError(f"output directory {self.root}: cannot be read: {error.strerror or error}") from None
        if not stat.S_ISDIR(info.st_mode):
            what = "a file" if stat.S_ISREG(info.st_mode) else "a device, pipe or socket"
            raise PermanentError(f"output directory {self.root} is {what}, not a directory; name a directory "
                                 "(it is created if missing)")

    def __repr__(self) -> str:
        return f"DirectoryTarget({str(self.root)!r})"

    # ---- plan -------------------------------------------------------------------------------------

    def plan(self, bundle: Bundle, *, revision: str | None = None, previous: Bundle | None = None,
             interrupt: Interrupt | None = None) -> Plan:
        self._check_root()   # a long-running watch: someone may have put a file there since
        live_manifest = self._read(MANIFEST_PATH)
        owned, recorded = self._owned_files(live_manifest)
        compared = self._files_to_compare(bundle, previous, live_manifest)
        paths = sorted(bundle.files) if compared is None else compared
        changes = [self._file_change(path, bundle.files[path], path in owned) for path in paths
                   if path != MANIFEST_PATH]
        removed = sorted(set(owned) - set(bundle.files))   # from the live manifest: exact either way
        changes += [Change(Action.DELETE, path, "no longer in the bundle") for path in reversed(removed)]
        changes.append(self._manifest_change(bundle, live_manifest))
        service_files = set(owned) - _MESH_LEVEL_FILES
        empties = bool(service_files) and service_files <= set(removed)   # every live service file would go
        return Plan(NAME, tuple(changes), revision=revision, state_token=_digest(live_manifest),
                    empties=empties, recorded=recorded, incremental=compared is not None)

    @staticmethod
    def _files_to_compare(bundle: Bundle, previous: Bundle | None, live_manifest: bytes | None) -> list[str] | None:
        """The files that differ from `previous`, if DIR still holds exactly `previous`; else None (all)."""
        if previous is None or live_manifest is None or live_manifest != previous.files.get(MANIFEST_PATH):
            return None
        delta = file_delta(previous, bundle)
        return None if delta is None else sorted(delta.new_or_changed)

    def _owned_files(self, live_manifest: bytes | None) -> tuple[dict[str, str], str]:
        """Path -> sha256 of every file the last sync (or `meshc build`) wrote here, and the
        revision (else spec digest) that manifest names ("" without one)."""
        manifest = self.root / MANIFEST_PATH
        if live_manifest is None:
            return {}, ""
        try:
            data = orjson.loads(live_manifest)
        except ValueError as error:
            raise PermanentError(f"{manifest}: cannot read meshc's manifest: {error}") from error
        if not isinstance(data, dict) or data.get("kind") != "BuildManifest":
            raise PermanentError(f"{manifest} exists and was not written by meshc; refusing to manage {self.root}")
        files = data.get("files") or {}
        owned = {path: str(meta.get("sha256", "")) for path, meta in files.items() if _safe_relative(path)}
        owned[MANIFEST_PATH] = ""
        source = data.get("source") or {}
        return owned, str(source.get("revision") or source.get("digest") or "")

    def _file_change(self, path: str, data: bytes, owned: bool) -> Change:
        if not _safe_relative(path):
            raise PermanentError(f"bundle path {path!r} leaves the output directory")
        live = self._read(path)
        if live is None:
            return Change(Action.CREATE, path)
        if live == data:
            return Change(Action.UNCHANGED, path)
        if not owned:
            raise PermanentError(f"{self.root / path} exists and was not written by meshc; move it away or "
                                 "choose another --output directory")
        return Change(Action.UPDATE, path, f"sha256 {_short(live)} -> {_short(data)}")

    @staticmethod
    def _manifest_change(bundle: Bundle, live: bytes | None) -> Change:
        data = bundle.files[MANIFEST_PATH]
        if live == data:
            return Change(Action.UNCHANGED, MANIFEST_PATH, bookkeeping=True)
        action = Action.CREATE if live is None else Action.UPDATE
        source = bundle.manifest.get("source") or {}
        stamp = str(source.get("revision") or source.get("digest") or "")[:12]
        return Change(action, MANIFEST_PATH, f"records revision {stamp} and the files meshc wrote", bookkeeping=True)

    def _read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise PermanentError(f"{self.root / path} is a directory; meshc wants a file there") from None
        except OSError as error:
            raise PermanentError(f"cannot read {self.root / path}: {error}") from error

    def _manifest_digest(self) -> str:
        return _digest(self._read(MANIFEST_PATH))

    # ---- apply ------------------------------------------------------------------------------------

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        """Writes (in path order: cds before lds), then deletes, then the manifest that records them.

        Files to create are first added to the live manifest, and files to delete leave it only at
        the end: the manifest stays a superset of what meshc has on disk after a failure at any
        point (a full disk, a crash), so a later sync, of this commit or another, finishes the job.
        """
        if plan.state_token != self._manifest_digest():
            raise StalePlan(f"{self.root / MANIFEST_PATH} changed since the plan was made")
        creates = [c.key for c in plan.writes if c.action is Action.CREATE and not c.bookkeeping]
        if creates:
            self._write(MANIFEST_PATH, self._claiming(creates, bundle))
        result = ApplyResult(NAME)
        for change in plan.writes:
            if change.action in (Action.CREATE, Action.UPDATE) and not change.bookkeeping:
                self._write(change.key, bundle.files[change.key])
                _record(result, change)
        for change in plan.deletes:
            self._delete(change.key)
            _record(result, change)
        for change in plan.writes:
            if change.bookkeeping:
                self._write(change.key, bundle.files[change.key])
                _record(result, change)
        return result

    def _claiming(self, creates: list[str], bundle: Bundle) -> bytes:
        """The live manifest with the files about to be created added: should the apply stop half-way
        (a full disk, a crash), the files it did create are still known as meshc's, and the next
        commit may update or delete them. Its source stays the live one: that commit is not applied."""
        live = self._read(MANIFEST_PATH)
        manifest: dict[str, Any] = orjson.loads(live) if live is not None else {"kind": "BuildManifest"}
        files: dict[str, Any] = dict(manifest.get("files") or {})
        files.update({path: {"sha256": hashlib.sha256(bundle.files[path]).hexdigest()} for path in creates})
        return orjson.dumps({**manifest, "files": files}, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)

    def _write(self, path: str, data: bytes) -> None:
        target = self.root / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                os.chmod(temp, 0o644)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise _io_error(f"cannot write {target}", error) from error

    def _delete(self, path: str) -> None:
        target = self.root / path
        try:
            target.unlink(missing_ok=True)
        except OSError as error:
            raise _io_error(f"cannot delete {target}", error) from error
        self._remove_empty_parents(target.parent)

    def _remove_empty_parents(self, directory: Path) -> None:
        root = self.root.resolve()
        while directory.resolve() != root and root in directory.resolve().parents:
            try:
                directory.rmdir()
            except OSError:
                return   # not empty (or not ours to remove): stop climbing
            directory = directory.parent

    def close(self) -> None:
        pass


def _io_error(what: str, error: OSError) -> SyncError:
    """Exhausted resources are transient (retried with backoff); anything else needs a person."""
    reason = error.strerror or str(error)
    if error.errno in _EXHAUSTED:
        return TransientError(f"{what}: {reason}")
    return PermanentError(f"{what}: {reason}")


def _record(result: ApplyResult, change: Change) -> None:
    result.applied.append(change)
    result.write_requests += 1


def _safe_relative(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def _digest(data: bytes | None) -> str:
    return "" if data is None else hashlib.sha256(data).hexdigest()


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]
