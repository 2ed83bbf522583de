"""Compiled specs kept on disk, so that `plan`/`apply` with etcd need not compile them again.

`meshc apply --repo` plans a new commit against the commit etcd records as applied (`meshc apply
mesh.yaml`, an edited spec against the spec whose sha256 etcd records): it needs
that commit's checked IR (which services changed) and its bundle (which files changed). Both
are a pure function of the spec's bytes, the build options and meshc itself, so a run that has
compiled a commit keeps them here, and the next run loads them instead of checking and building
that commit again; the new commit is then built incrementally from it.

An entry keeps the spec's bytes (so that a spec file's digest finds them: load_applied), the
checked IR, every diagnostic, the manifest and the files of the whole mesh
(etcd's seed, the Namespace, gateways), but not the files of each service (most of a bundle's
bytes): those are rendered again from the IR, a service at a time, when something reads them
(`OnDemandFiles`), and checked against the manifest's digests. A bundle built from a kept
commit renders the services whose files can differ (`pipeline.affected_services`) and leaves the
others to be rendered if read: an incremental plan reads only the files that changed.

An entry is one file, `compiled-<key>.pickle`, named by a digest of everything its content is
made from: the spec's name and bytes, the build options, the source of every meshc module, and
the versions of Python and of the libraries that shape the output. Another meshc, another spec or
other options look for another name; the file repeats its key, and a file whose key or shape does
not match is ignored. The commit is not part of the key: a commit that leaves the spec as it was
(one that changes other files, a revert) loads the entry of an earlier commit with the same bytes,
its manifest naming the commit asked for. The directory is meshc's cache directory
(meshc.cache: `MESHC_CACHE_DIR`, else `$XDG_CACHE_HOME/meshc`, else ~/.cache/meshc); files are
written atomically with mode 0600, and since unpickling runs code a file names, a file is read
only when it is the user's own and writable by no one else (meshc.cache.trusted). The KEPT most
recently used entries stay. A file that cannot be read is ignored (and replaced when that commit
is compiled again); a directory that cannot be written costs only the time.

The verbs write their entry in a process they do not wait for (store_detached), once their result
is out; a run that looks for an entry being written waits for it (the `.writing` file's lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import io
import operator
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from meshc import __version__, render
from meshc.cache import cache_dir, keep_newest, trusted, write_atomic
from meshc.bundle import Bundle, FileEntry, manifest
from meshc.diagnostics import MeshcError, error
from meshc.emit.naming import MANIFEST_PATH
from meshc.load import SpecSource
from meshc.pipeline import (
    BuildOptions, Checked, Compiled, affected_files, affected_services, build_bundle, changed_services,
    external_dependencies, file_owner, iter_files, no_cycle_collection,
)
from meshc.resolve import ir

_PREFIX = "compiled-"
_SUFFIX = ".pickle"
_MAGIC = "meshc-compiled"
# A bump makes every entry miss when the file's layout changes.
_FORMAT = 4
KEPT = 4
# How long a run waits for an entry another run is writing (store_detached): writing one takes
# half a second at 5,000 services on a loaded machine.
WRITER_WAIT_S = 30.0


def load(source: SpecSource, options: BuildOptions) -> Compiled | None:
    """The compilation of `source` with `options` kept by an earlier run; None when there is
    none, it cannot be read, or it is not this meshc's compilation of these bytes. An entry that
    an earlier run is still writing (store_detached) is waited for."""
    wanted = _Wanted(source.name, spec_digest(source.data), source.revision, source)
    return _load(entry_path(source, options), wanted, options)


def has(source: SpecSource, options: BuildOptions) -> bool:
    """Whether an entry of `source` with `options` is kept (one the user may read; it is not
    read here): a run that compiled the spec from another entry need not write it again."""
    try:
        return trusted(entry_path(source, options).stat())
    except OSError:
        return False


def load_applied(name: str, digest: str, options: BuildOptions) -> Compiled | None:
    """The kept compilation of the spec called `name` whose bytes have the sha256 `digest`, what
    etcd records as applied for a spec synced from a file (meshc.sync.etcd: the commit, else the
    spec's digest): found without the bytes, which the entry holds and which are checked against
    `digest`. None as for load(); also when `digest` names a commit rather than bytes."""
    return _load(cache_dir() / f"{_PREFIX}{_key(name, digest, options)}{_SUFFIX}", _Wanted(name, digest, None), options)


@dataclasses.dataclass(frozen=True)
class _Wanted:
    """The spec an entry must hold: its name, the sha256 of its bytes, the commit to name, and
    the caller's SpecSource of it when it has one."""

    name: str
    digest: str
    revision: str | None
    source: SpecSource | None = None

    def spec_source(self, data: bytes) -> SpecSource:
        return self.source if self.source is not None else SpecSource(self.name, data, self.revision)


def _load(path: Path, wanted: _Wanted, options: BuildOptions) -> Compiled | None:
    compiled = _read(path, wanted, options)
    if compiled is None:
        _waited_for_writer(path)
        compiled = _read(path, wanted, options)   # also when the writer ended since the first read
    return compiled


def _read(path: Path, wanted: _Wanted, options: BuildOptions) -> Compiled | None:
    try:
        with path.open("rb") as file:
            if not trusted(os.fstat(file.fileno())):
                return None
            data = file.read()
        compiled = _decoded(data, _key(wanted.name, wanted.digest, options), wanted, options)
    except Exception:  # noqa: BLE001 - missing, truncated, damaged, from another meshc: compile it again
        return None
    if compiled is not None:
        _touch(path)
    return compiled


def store(compiled: Compiled) -> None:
    """Keep a compilation that checked clean (with the options it was built with) for later runs;
    the oldest entries are forgotten. Never raises: a cache that cannot be written only costs time."""
    checked, bundle, options = compiled.checked, compiled.bundle, compiled.options
    if bundle is None or options is None or checked.mesh is None or not checked.ok:
        return
    try:
        key = entry_key(checked.source, options)
        deployed = _deployed(checked.mesh)
        mesh_files = {path: bundle.files[path] for path in bundle.files if _service_of(path, deployed) is None}
        data = _encoded((_MAGIC, _FORMAT, key, checked.source.data, checked.diagnostics, checked.mesh, options,
                         mesh_files))
        _write(cache_dir() / f"{_PREFIX}{key}{_SUFFIX}", data)
    except Exception:  # noqa: BLE001 - a full disk, a read-only home...: the run's own outcome stands
        return


def store_detached(compiled: Compiled, *also_held: object) -> None:
    """store(), in a process this one does not wait for, as `git gc --auto` detaches: a verb's
    result is printed and its process ends while the entry is encoded and written (a tenth of a
    second at 1,000 services, half a second at 5,000). The entry's `.writing` file stays locked
    until it is written; a run that looks for the entry meanwhile waits for it (load). When no
    process can be started, or another is writing the same entry already, nothing waits here
    either: the entry is written now, or by the other.

    Once the writer is forked, every page this process writes is copied (copy-on-write), and
    freeing a compiled mesh writes to nearly all of its pages (0.3 s at 5,000 services): so
    `compiled`, and `also_held` (the caller's other large objects), are never freed here, only
    dropped with the process (see held_until_exit)."""
    checked, options = compiled.checked, compiled.options
    if compiled.bundle is None or options is None or checked.mesh is None or not checked.ok:
        return
    with contextlib.suppress(OSError):
        path = entry_path(checked.source, options)
        _write_detached(path, lambda: _write_entry(compiled, path), compiled, *also_held)


def _write_detached(path: Path, write: Callable[[], None], *held: object) -> None:
    """Run `write` (which writes the entry at `path`) in a detached process, holding `.writing`'s
    lock for it; nothing when another run holds that lock; `write` here when no process can be
    started. `held` are never freed in this process (held_until_exit). Raises OSError when the
    cache directory cannot be made or the lock file opened."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(_writing(path), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:      # another run is writing this entry
        os.close(lock)
        return
    try:
        _detach(write)
        held_until_exit(*held)
    except OSError:      # no process could be started (a process limit...): write it now
        write()
    finally:
        os.close(lock)   # the writer holds the lock (the same open file) until it has written


_HELD: list[object] = []


def held_until_exit(*objects: object) -> None:
    """Keep `objects` until the process ends, and then let the operating system drop them rather
    than Python free them one by one: each is held in a reference cycle, which the exit of the
    `meshc` command (after gc.freeze(), see meshc.cli.run) never collects."""
    holder: list[object] = [*objects]
    holder.append(holder)
    _HELD.append(holder)


def _write_entry(compiled: Compiled, path: Path) -> None:
    store(compiled)
    try:
        os.unlink(_writing(path))   # before the lock goes: a reader that found the file finds the entry
    except OSError:
        pass


def _detach(run: Callable[[], None]) -> None:
    """Run `run` in a child process this one does not wait for: its output goes nowhere (a caller
    reading this process's output until EOF does not wait for it), and in a session of its own
    neither Ctrl-C nor the terminal's hang-up stops it. One fork, not two (forking a process that
    holds two compiled meshes costs a few hundredths of a second each time): the child is left to
    whoever reaps this process's children, init once this process has ended. Raises OSError."""
    from meshc.bundle.shards import fork_child

    def detached() -> NoReturn:
        status = 1
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.setsid()
            run()
            status = 0
        finally:
            os._exit(status)   # never the parent's exit handlers or finally blocks

    fork_child(detached)


def _waited_for_writer(path: Path) -> bool:
    """Wait for a run writing the entry at `path` (store_detached), at most WRITER_WAIT_S; True
    when there was one and it is done. False also when no `.writing` file is there, which may
    mean that the writer finished (and removed it) a moment ago: a reader that missed the entry
    reads it once more whatever this says."""
    import time

    try:
        lock = os.open(_writing(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        deadline = time.monotonic() + WRITER_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
    finally:
        os.close(lock)


def settle(directory: Path | None = None) -> None:
    """Wait until no run writes an entry in the cache directory (store_detached), each for at
    most WRITER_WAIT_S: for tools that list or clear the directory."""
    for writing in sorted((directory or cache_dir()).glob("*.writing")):
        _waited_for_writer(writing)


def _writing(path: Path) -> Path:
    return path.with_suffix(".writing")


# --- checked specs (meshc diff) ---------------------------------------------------------------
# `meshc diff` checks the base branch's spec again for every pull request: a clean check is kept
# as `checked-<key>.pickle` (the same key as a compilation's with the default options, another
# prefix), the diagnostics and the IR alone: a diff builds only what can differ.
_CHECKED_PREFIX = "checked-"
_CHECKED_MAGIC = "meshc-checked"


def checked_entry_path(source: SpecSource) -> Path:
    return cache_dir() / f"{_CHECKED_PREFIX}{entry_key(source, BuildOptions())}{_SUFFIX}"


def load_checked(source: SpecSource) -> Checked | None:
    """The check of `source` kept by an earlier run (`store_checked_detached`), as
    `pipeline.check(source)` gives it; None when there is none, it cannot be read, or it is not
    this meshc's check of these bytes. An entry being written is waited for."""
    path = checked_entry_path(source)
    checked = _read_checked(path, source)
    if checked is None:
        _waited_for_writer(path)
        checked = _read_checked(path, source)     # also when the writer ended since the first read
    return checked


def _read_checked(path: Path, source: SpecSource) -> Checked | None:
    try:
        with path.open("rb") as file:
            if not trusted(os.fstat(file.fileno())):
                return None
            data = file.read()
        checked = _decoded_checked(data, entry_key(source, BuildOptions()), source)
    except Exception:  # noqa: BLE001 - missing, truncated, damaged, from another meshc: check it again
        return None
    if checked is not None:
        _touch(path)
    return checked


@no_cycle_collection
def _decoded_checked(data: bytes, key: str, source: SpecSource) -> Checked | None:
    entry: Any = pickle.loads(data)
    if not (isinstance(entry, tuple) and len(entry) == 5 and entry[:3] == (_CHECKED_MAGIC, _FORMAT, key)):
        return None
    diagnostics, mesh = entry[3:]
    if not isinstance(mesh, ir.Mesh) or not isinstance(diagnostics, tuple):
        return None
    return Checked(source, diagnostics, mesh)


def store_checked_detached(checked: Checked, *also_held: object) -> None:
    """Keep a clean check for later runs, written in a process this one does not wait for (as
    `store_detached` does); the oldest entries are forgotten. Never raises."""
    if checked.mesh is None or not checked.ok:
        return
    with contextlib.suppress(OSError):
        path = checked_entry_path(checked.source)
        _write_detached(path, lambda: _write_checked(checked, path), checked, *also_held)


def _write_checked(checked: Checked, path: Path) -> None:
    try:
        key = entry_key(checked.source, BuildOptions())
        data = _encoded((_CHECKED_MAGIC, _FORMAT, key, checked.diagnostics, checked.mesh))
        write_atomic(path, data)
        keep_newest(path.parent, f"{_CHECKED_PREFIX}*{_SUFFIX}", KEPT)
    except Exception:  # noqa: BLE001 - a full disk, a read-only home...: the run's own outcome stands
        pass
    try:
        os.unlink(_writing(path))
    except OSError:
        pass


def build_from(checked: Checked, options: BuildOptions, kept: Compiled) -> Compiled:
    """The compilation of a spec that checked clean, built from a kept one (same options): the
    files of the services whose output can differ from kept's, and of the whole mesh, are rendered;
    every other service's files are kept's (its manifest entries), rendered only if read. The
    bundle a full build makes, byte for byte. Without a kept IR to compare with, a full build."""
    mesh = checked.mesh
    old = kept.checked.mesh
    changed = changed_services(old, mesh) if mesh is not None and old is not None else set()
    affected = affected_services(old, mesh, changed) if mesh is not None and old is not None else None
    if mesh is None or kept.bundle is None or affected is None or kept.options != options:
        return Compiled(checked, build_bundle(checked, options), options)
    rendered = affected_files(mesh, options, affected, kept.bundle.files, changed)
    unaffected = _deployed(mesh) - affected
    carried = {path: FileEntry(entry["sha256"], entry["size"])
               for path, entry in (kept.bundle.manifest.get("files") or {}).items()
               if _service_of(path, unaffected) is not None}
    entries = {path: FileEntry.of(data) for path, data in rendered.items()} | carried
    rendered[MANIFEST_PATH] = manifest(entries, mesh=mesh.name, spec_digest=render.sha256(checked.source.data),
                                      revision=checked.source.revision, external=external_dependencies(checked))
    files = OnDemandFiles(rendered, [*sorted(entries), MANIFEST_PATH], mesh, options)
    return Compiled(checked, Bundle(files), options)


class OnDemandFiles(Mapping[str, bytes]):
    """A bundle's files, the services' own rendered from the IR when first read (a service at a
    time) and checked against the manifest; paths iterate in the bundle's order."""

    __slots__ = ("_files", "_order", "_listed", "_mesh", "_options", "_deployed", "_entries")

    def __init__(self, files: Mapping[str, bytes], order: list[str], mesh: ir.Mesh, options: BuildOptions) -> None:
        self._files = dict(files)
        self._order = tuple(order)
        self._listed = frozenset(order)
        self._mesh = mesh
        self._options = options
        self._deployed = _deployed(mesh)
        self._entries: dict[str, Any] | None = None    # the manifest's, parsed at the first render

    def __getitem__(self, path: str) -> bytes:
        data = self._files.get(path)
        if data is not None:
            return data
        service = _service_of(path, self._deployed)
        if service is None or path not in self._listed:
            raise KeyError(path)
        self._render(service)
        return self._files[path]

    def __contains__(self, path: object) -> bool:
        return path in self._files or path in self._listed

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def _render(self, service: str) -> None:
        if self._entries is None:
            self._entries = _manifest_entries(self._files[MANIFEST_PATH])
        for path, data in iter_files(self._mesh, self._options, only={service}, mesh_files=False):
            if render.sha256(data) != (self._entries.get(path) or {}).get("sha256"):
                raise MeshcError([error("E001", f"{path} rendered again differs from its manifest entry: a "
                                        "file of meshc's compile cache holds another compilation than its name "
                                        "says", None, hint=f"remove {cache_dir()}/{_PREFIX}* and retry")], 1)
            self._files[path] = data


def _manifest_entries(data: bytes) -> dict[str, Any]:
    import orjson

    files: dict[str, Any] = orjson.loads(data).get("files") or {}
    return files


def _deployed(mesh: ir.Mesh) -> frozenset[str]:
    return frozenset(service.name for service in mesh.deployed_services)


def _service_of(path: str, services: frozenset[str]) -> str | None:
    """The service among `services` whose own file this is (envoy/<name>/..., kubernetes/<name>.yaml)."""
    name = file_owner(path)
    return name if name in services else None


def entry_path(source: SpecSource, options: BuildOptions) -> Path:
    return cache_dir() / f"{_PREFIX}{entry_key(source, options)}{_SUFFIX}"


def entry_key(source: SpecSource, options: BuildOptions) -> str:
    """A digest of everything an entry's content is made from."""
    return _key(source.name, spec_digest(source.data), options)


def _key(name: str, digest: str, options: BuildOptions) -> str:
    """entry_key of the spec called `name` whose bytes have the sha256 `digest`."""
    key = hashlib.sha256()
    for part in (code_digest(), name, digest, _options_text(options)):
        key.update(part.encode() + b"\0")
    return key.hexdigest()[:40]


def spec_digest(data: bytes) -> str:
    """The sha256 of a spec's bytes, as its manifest (`source.digest`) and etcd's revision record
    of a spec synced from a file name it."""
    return hashlib.sha256(data).hexdigest()


@functools.cache
def code_digest() -> str:
    """meshc's own code and what shapes its output: the source of every module of the package (a
    changed meshc, even at the same version number, is another compiler), the versions of Python
    and of the libraries that read the spec and render the output, and this file's layout."""
    import orjson
    import yaml

    # pydantic's version is read from its version.py, as the validator cache does: importing
    # pydantic is what a command with light models (meshc.validate.light) does without
    from meshc.validate import compiled, light

    digest = hashlib.sha256()
    for part in (str(_FORMAT), __version__, sys.version, yaml.__version__, str(yaml.__with_libyaml__),
                 orjson.__version__, Path(compiled.pydantic_version_file()).read_text(encoding="utf-8"),
                 light.core_version()):
        digest.update(part.encode() + b"\0")
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _options_text(options: BuildOptions) -> str:
    fields = dataclasses.asdict(options)
    fields["envoy_hosts"] = sorted(dict(options.envoy_hosts).items())
    return repr(sorted(fields.items()))


@no_cycle_collection   # tens of thousands of IR objects and no cycle among them
def _decoded(data: bytes, key: str, wanted: _Wanted, options: BuildOptions) -> Compiled | None:
    import orjson

    entry: Any = pickle.loads(data)
    if not (isinstance(entry, tuple) and len(entry) == 8 and entry[:3] == (_MAGIC, _FORMAT, key)):
        return None
    spec, diagnostics, mesh, kept_options, mesh_files = entry[3:]
    if not isinstance(spec, bytes) or spec_digest(spec) != wanted.digest:
        return None
    if kept_options != options or not isinstance(mesh, ir.Mesh) or MANIFEST_PATH not in mesh_files:
        return None
    manifest_document = orjson.loads(mesh_files[MANIFEST_PATH])
    if manifest_document["source"]["revision"] != wanted.revision:
        mesh_files = mesh_files | {MANIFEST_PATH: _for_revision(manifest_document, wanted.revision)}
    order = [*sorted(manifest_document.get("files") or {}), MANIFEST_PATH]
    bundle = Bundle(OnDemandFiles(mesh_files, order, mesh, options))
    return Compiled(Checked(wanted.spec_source(spec), tuple(diagnostics), mesh), bundle, options)


def _for_revision(manifest_document: dict[str, Any], revision: str | None) -> bytes:
    """The manifest of an entry kept for another commit with the same spec bytes, naming
    `revision` instead (the one file that names the commit): the bytes a build of it gives."""
    return render.document({**manifest_document, "source": {**manifest_document["source"], "revision": revision}})


def _encoded(entry: tuple[Any, ...]) -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _compact_reducers()
    pickler.dump(entry)
    return out.getvalue()


@functools.cache
def _compact_reducers() -> dict[type, Callable[[Any], tuple[type, tuple[Any, ...]]]]:
    """The IR's and the diagnostics' dataclasses pickled as calls of their constructors with the
    field values: a third smaller and twice as fast to load as pickle's default for slotted
    dataclasses, which sets each field by name through `dataclasses.fields()`."""
    from meshc import diagnostics
    from meshc.resolve import ir

    reducers: dict[type, Callable[[Any], tuple[type, tuple[Any, ...]]]] = {}
    for module in (ir, diagnostics):
        for cls in vars(module).values():
            if isinstance(cls, type) and cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls):
                fields = dataclasses.fields(cls)
                if fields and all(field.init for field in fields):
                    reducers[cls] = _constructor_call(cls, tuple(field.name for field in fields))
    return reducers


def _constructor_call(cls: type, names: tuple[str, ...]) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    values = operator.attrgetter(*names)
    if len(names) == 1:
        return lambda obj: (cls, (values(obj),))
    return lambda obj: (cls, values(obj))


def _write(path: Path, data: bytes) -> None:
    """Write atomically (a reader sees the old file or the new one, whole), then forget the
    least recently used entries."""
    write_atomic(path, data)
    keep_newest(path.parent, f"{_PREFIX}*{_SUFFIX}", KEPT)


def _touch(path: Path) -> None:
    """Mark an entry used: the commit applied last is read at every apply and must outlive
    the entries of commits only planned since."""
    try:
        os.utime(path)
    except OSError:
        pass


