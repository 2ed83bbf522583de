"""The directory target (`--output DIR`): keep DIR equal to the bundle's files, file by file.

Each changed file is written beside itself and renamed into place, so an Envoy watching
`envoy/<service>/` sees a MOVE and hot-reloads. Unchanged files are not touched (a no-op sync
writes nothing). DIR/manifest.json — the bundle's own manifest — records which files meshc
wrote: only those are ever replaced or deleted; anything else in DIR is left alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import orjson

from meshc.bundle import Bundle
from meshc.emit.naming import ETCD_SEED_PATH, KUSTOMIZATION_PATH, MANIFEST_PATH, NAMESPACE_PATH
from meshc.sync.target import Action, ApplyResult, Change, PermanentError, Plan, StalePlan

NAME = "directory"
# Files every bundle has whatever its services: deleting all the others empties the mesh.
_MESH_LEVEL_FILES = frozenset({MANIFEST_PATH, ETCD_SEED_PATH, NAMESPACE_PATH, KUSTOMIZATION_PATH})


class DirectoryTarget:
    """A local directory, e.g. the config dir of Envoys on plain hosts."""

    name = NAME

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DirectoryTarget({str(self.root)!r})"

    # ---- plan -------------------------------------------------------------------------------------

    def plan(self, bundle: Bundle, *, revision: str | None = None) -> Plan:
        owned = self._owned_files()
        changes = [self._file_change(path, data, path in owned) for path, data in sorted(bundle.files.items())
                   if path != MANIFEST_PATH]
        removed = sorted(set(owned) - set(bundle.files))
        changes += [Change(Action.DELETE, path, "no longer in the bundle") for path in reversed(removed)]
        changes.append(self._manifest_change(bundle))
        service_files = set(owned) - _MESH_LEVEL_FILES
        empties = bool(service_files) and service_files <= set(removed)   # every live service file would go
        return Plan(NAME, tuple(changes), revision=revision, state_token=self._manifest_digest(),
                    empties=empties)

    def _owned_files(self) -> dict[str, str]:
        """Path -> sha256 of every file the last sync (or `meshc build`) wrote here."""
        manifest = self.root / MANIFEST_PATH
        try:
            data = orjson.loads(manifest.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise PermanentError(f"{manifest}: cannot read meshc's manifest: {error}") from error
        if not isinstance(data, dict) or data.get("kind") != "BuildManifest":
            raise PermanentError(f"{manifest} exists and was not written by meshc; refusing to manage {self.root}")
        files = data.get("files") or {}
        owned = {path: str(meta.get("sha256", "")) for path, meta in files.items() if _safe_relative(path)}
        owned[MANIFEST_PATH] = ""
        return owned

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

    def _manifest_change(self, bundle: Bundle) -> Change:
        live = self._read(MANIFEST_PATH)
        data = bundle.files[MANIFEST_PATH]
        if live == data:
            return Change(Action.UNCHANGED, MANIFEST_PATH, bookkeeping=True)
        action = Action.CREATE if live is None else Action.UPDATE
        return Change(action, MANIFEST_PATH, "records the files meshc wrote", bookkeeping=True)

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
        data = self._read(MANIFEST_PATH)
        return "" if data is None else hashlib.sha256(data).hexdigest()

    # ---- apply ------------------------------------------------------------------------------------

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        """Writes (in path order: cds before lds), then deletes, then the manifest that records them.

        That order keeps the manifest a superset of what meshc has on disk after a crash at any
        point, so a later sync can still finish the job.
        """
        if plan.state_token != self._manifest_digest():
            raise StalePlan(f"{self.root / MANIFEST_PATH} changed since the plan was made")
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
            raise PermanentError(f"cannot write {target}: {error}") from error

    def _delete(self, path: str) -> None:
        target = self.root / path
        try:
            target.unlink(missing_ok=True)
        except OSError as error:
            raise PermanentError(f"cannot delete {target}: {error}") from error
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


def _record(result: ApplyResult, change: Change) -> None:
    result.applied.append(change)
    result.write_requests += 1


def _safe_relative(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]
