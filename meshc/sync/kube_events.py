"""Drift found by Kubernetes watch streams: what lets `meshc watch` idle instead of LISTing.

One stream per managed kind (and namespace) with the mesh's label selector, started from the
resourceVersion of a LIST of that kind: the LIST the full plan just applied made, when it covered
exactly the stream's kind, namespace and selector (that plan compared every object it returned,
and the sync corrected them: a start-up LISTs the mesh once, not twice), else a LIST of the
stream's own, compared in full. Each event's object is compared with the desired object
as a plan would (config hash, then the fields meshc sets): an object edited by hand, deleted, or
carrying the mesh's labels without being in the spec is marked, and the loop is woken to plan and
correct just the marked objects. meshc's own applies produce events too; they match the desired
objects and mark nothing.

At rest this must cost next to nothing, whatever the mesh's size: only an index of which bundle
file holds each object is kept (strings: nothing for the garbage collector to walk), a desired
object is parsed from its file when an event needs it, and LISTs are compared a page at a time,
one kind at a time.

A stream that ends (its timeout) resumes from the last resourceVersion seen (bookmarks keep it
fresh); one whose version is too old (410 Gone) or that fails LISTs again, and that LIST is itself
compared in full, so nothing that happened meanwhile is missed. Full drift checks still run, at
a long interval (watch's --drift-interval), as a backstop.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meshc.bundle import Bundle
from meshc.emit.naming import KUSTOMIZATION_PATH, mesh_selector
from meshc.sync.delta import file_delta
from meshc.sync.memory import release_memory
from meshc.sync.kubernetes import KubernetesTarget, file_objects, object_files, object_key
from meshc.sync.target import SyncError
from meshc.threads import start_without_interrupts

Obj = dict[str, Any]
WATCH_SECONDS = 300        # each stream is re-opened this often (the server's own limit is 30-60 min)
RETRY_BASE = 0.5           # seconds before a failed stream LISTs again; doubles up to RETRY_CAP
RETRY_CAP = 30.0
HTTP_GONE = 410
CLOSE_WAIT = 2.0           # seconds close() waits for all streams together
# A burst of this many events (the replay of a first sync's writes to a new cluster, a mass edit)
# has parsed much of the mesh, as a LIST does: once no event came for QUIET seconds, the memory
# is given back (settle()).
BURST_EVENTS = 1000
QUIET = 2.0


@dataclass(frozen=True)
class Scope:
    """One stream: a kind, in a namespace (None: a cluster-scoped kind)."""

    api_version: str
    kind: str
    namespace: str | None


class _Desired:
    """The applied bundle, as events are compared with it."""

    PARSED_FILES = 64              # parsed files kept (events come in bursts of one service's files)

    def __init__(self, bundle: Bundle, previous: _Desired | None = None) -> None:
        self.mesh = str(bundle.manifest["mesh"])
        self.bundle = bundle
        self.files = _index(bundle, previous)     # object key -> the bundle file that holds it
        self._parsed: dict[str, dict[str, Obj]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Obj | None:
        path = self.files.get(key)
        if path is None:
            return None
        with self._lock:
            objects = self._parsed.get(path)
            if objects is None:
                if len(self._parsed) >= self.PARSED_FILES:
                    self._parsed.clear()
                objects = self._parsed[path] = file_objects(self.bundle, path)
        return objects.get(key)

    @functools.cached_property
    def scopes(self) -> set[Scope]:
        """The kinds and namespaces of the desired objects (one stream each); asked on every pass."""
        scopes = set()
        for key in self.files:
            api_version, kind, name = key.split(" ", 2)
            namespace, _, _ = name.rpartition("/")
            scopes.add(Scope(api_version, kind, namespace or None))
        return scopes

    def keys_in(self, scope: Scope) -> list[str]:
        """The desired objects of one stream's kind and namespace."""
        prefix = f"{scope.api_version} {scope.kind} " + (f"{scope.namespace}/" if scope.namespace else "")
        return [key for key in self.files if key.startswith(prefix)
                and (scope.namespace is not None or "/" not in key[len(prefix):])]


def _index(bundle: Bundle, previous: _Desired | None) -> dict[str, str]:
    """Which file holds each object; from the previous index and the files that differ, when the
    manifests say which (a one-service commit parses that service's files only)."""
    delta = file_delta(previous.bundle, bundle) if previous is not None else None
    if previous is None or delta is None:
        return object_files(bundle)
    files = delta.under("kubernetes/")
    gone = files.old_or_changed
    index = {key: path for key, path in previous.files.items() if path not in gone}
    for path in sorted(files.new_or_changed - {KUSTOMIZATION_PATH}):
        index.update((key, path) for key in file_objects(bundle, path))
    return index


_LISTING = threading.Lock()   # one LIST at a time across streams: a short, low memory peak


class KubeEvents:
    """Watches a mesh's objects on one cluster; `take()` hands over the keys that need a plan."""

    def __init__(self, target: KubernetesTarget, notify: Callable[[], None]) -> None:
        self.target = target
        self._notify = notify
        self._lock = threading.Lock()
        self._desired: _Desired | None = None
        self._dirty: set[str] = set()
        self._streams: dict[Scope, _Stream] = {}
        self._selector = ""             # the label selector of the streams running
        self._client: Any = None
        self._listed: set[Scope] = set()   # streams that have LISTed (or started from a plan's LIST)
        self.lists = 0                 # LISTs the streams made (a stream's first, and relists)
        self.relists = 0               # LISTs after a stream's start (410 Gone, failures)
        self.from_plans = 0            # streams started from a plan's LIST, without one of their own
        self.events = 0                # object events received
        self.last_error: str | None = None
        self._burst = 0                # events since memory was last given back
        self._last_event = 0.0         # monotonic time of the last event

    # ---- what the loop calls -------------------------------------------------------------------

    def expect(self, bundle: Bundle) -> None:
        """From now on compare events with this bundle (before it is applied: its own writes then
        match and mark nothing)."""
        current = self._desired
        if current is None or current.bundle is not bundle:
            self._desired = _Desired(bundle, current)

    def follow(self, bundle: Bundle, *, planned: bool = False) -> None:
        """The bundle is applied: compare with it, and stream every kind and namespace it has.
        `planned`: the sync that just ended applied its plan (not a dry run). Then a new stream
        whose scope that plan LISTed in full starts from that LIST's resourceVersion: everything
        the LIST returned was compared and corrected, and later writes (the sync's own included)
        arrive as events. Other new streams LIST first."""
        versions = self.target.take_list_versions()   # taken even when unused: never a later sync's
        self.expect(bundle)
        scopes = self._scopes()
        selector = mesh_selector(self._desired.mesh) if self._desired else ""
        # A stream selects by the mesh's label: a renamed mesh needs every stream anew.
        renamed = selector != self._selector
        self._selector = selector
        for scope in [s for s in self._streams if renamed or s not in scopes]:
            self._streams.pop(scope).stop()
        missing = [s for s in scopes if s not in self._streams]
        if not missing:
            return
        if self._client is None:
            self._client = self.target.streaming_client(len(scopes) + 4)
        for scope in missing:
            version = versions.get((scope.api_version, scope.kind, scope.namespace, selector)) if planned else None
            if version:
                self._planned(scope)
            stream = _Stream(self, scope, (selector, version) if version else None)
            self._streams[scope] = stream
            stream.start()

    def sync_starts(self) -> None:
        """A sync begins: forget the versions of LISTs made before it (a plan set aside or not
        applied compared what it LISTed but corrected nothing)."""
        self.target.take_list_versions()

    def take(self) -> set[str]:
        """The keys marked since the last take (and forget them)."""
        with self._lock:
            taken, self._dirty = self._dirty, set()
        return taken

    def paths_of(self, keys: Iterable[str], bundle: Bundle) -> set[str] | None:
        """The files of `bundle` that hold those of `keys` it has (the others are not desired), from
        the index kept for event comparison; None when the index is of another bundle."""
        desired = self._desired
        if desired is None or desired.bundle is not bundle:
            return None
        return {path for path in (desired.files.get(key) for key in keys) if path is not None}

    def pending(self) -> bool:
        with self._lock:
            return bool(self._dirty)

    def give_back(self, keys: Iterable[str]) -> None:
        """Keys whose correction failed: try again with the next ones."""
        with self._lock:
            self._dirty.update(keys)

    def close(self) -> None:
        """Stop the streams; wait for them briefly (a stream opening just now may only notice
        at its next event; its thread is a daemon and holds nothing that needs cleaning up)."""
        for stream in self._streams.values():
            stream.stop()
        deadline = time.monotonic() + CLOSE_WAIT
        for stream in self._streams.values():
            stream.join(max(0.0, deadline - time.monotonic()))
        self._streams.clear()
        if self._client is not None:
            self._client.client.close()
            self._client = None        # a later follow() opens a new one

    @property
    def healthy(self) -> bool:
        """Every stream has LISTed (or starts from a plan's LIST) and is following its kind: drift
        there would be seen."""
        return bool(self._streams) and all(stream.following for stream in self._streams.values())

    @property
    def scopes(self) -> list[Scope]:
        return sorted(self._streams, key=lambda s: (s.kind, s.namespace or ""))

    # ---- what the streams call -----------------------------------------------------------------

    def _scopes(self) -> set[Scope]:
        desired = self._desired
        return desired.scopes if desired else set()

    def _seen(self, obj: Obj, deleted: bool) -> None:
        desired = self._desired
        if desired is None:
            return
        key = object_key(obj)
        want = desired.get(key)
        if deleted:
            drifted = want is not None
        else:
            drifted = self.target.changed(want, obj, desired.mesh)
        if drifted:
            self._mark([key])

    def _list(self, scope: Scope, resource: Any, selector: str) -> str:
        """LIST one stream's kind, compare every object (a page at a time) and mark what it lacks;
        the resourceVersion to watch from."""
        present: set[str] = set()

        def page(items: list[Obj]) -> None:
            for item in items:
                present.add(object_key(item))
                self._seen(item, deleted=False)

        with _LISTING:
            self.lists += 1
            version = self.target.list_versioned(resource, scope.namespace, selector, page)
            self._listed.add(scope)
            if self._listed >= set(self._streams):
                release_memory()        # the last stream has listed: the peak is over
        desired = self._desired
        if desired is not None:
            self._mark([key for key in desired.keys_in(scope) if key not in present])
        return version

    def settle(self) -> None:
        """Between passes: after a burst of events that is over, give the memory its comparisons
        took back (as after the streams' LISTs). At most once per burst."""
        if self._burst >= BURST_EVENTS and time.monotonic() - self._last_event >= QUIET:
            self._burst = 0
            release_memory()

    def _counted(self) -> None:
        self.events += 1
        self._burst += 1
        self._last_event = time.monotonic()

    def _planned(self, scope: Scope) -> None:
        """A stream starts from the version of a plan's LIST: it counts as listed."""
        with _LISTING:
            self._listed.add(scope)
            self.from_plans += 1

    def _mark(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._lock:
            self._dirty.update(keys)
        self._notify()


class _Stream:
    """One kind's LIST-then-watch loop, on a thread of its own."""

    def __init__(self, owner: KubeEvents, scope: Scope, start: tuple[str, str] | None = None) -> None:
        self.owner = owner
        self.scope = scope
        self._start = start            # (selector, version) of a plan's LIST to watch from, not LISTing
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # stop() and the opening of a stream do not interleave
        self._watch: Any = None
        # LISTed (or started from a plan's LIST, which counts as one), and not failed since
        self.following = start is not None
        self._thread = threading.Thread(target=self._run, name=f"watch {scope.kind}", daemon=True)

    def start(self) -> None:
        start_without_interrupts(self._thread)

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._watch is not None:
                self._watch.stop()     # shuts the stream's socket: a blocked read returns

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        delay = RETRY_BASE
        listed_before = False
        while not self._stopped.is_set():
            try:
                resource = self.owner.target.resource(self.scope.api_version, self.scope.kind)
                desired = self.owner._desired
                selector = mesh_selector(desired.mesh) if desired else ""
                start, self._start = self._start, None    # after a 410 or a failure: LIST
                if start is not None:
                    selector, version = start
                else:
                    version = self.owner._list(self.scope, resource, selector)
                    if listed_before:
                        self.owner.relists += 1
                listed_before = True
                self.following = True
                self._follow(resource, selector, version)
                delay = RETRY_BASE
            except _Gone:
                continue                       # LIST again at once: that is what 410 asks for
            except (SyncError, OSError, ValueError) as error:
                self.following = False
                self.owner.last_error = f"{self.scope.kind}: {error}"
            except Exception as error:  # noqa: BLE001 - the client raises many types; a stream must not die
                self.following = False
                self.owner.last_error = f"{self.scope.kind}: {type(error).__name__}: {error}"
            self._stopped.wait(delay)
            delay = min(delay * 2, RETRY_CAP)

    def _follow(self, resource: Any, selector: str, version: str) -> None:
        """Stream events from `version` on, re-opening the stream when it times out; returns (to
        LIST again) only when stopped; raises _Gone when the version is too old."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while True:
            with self._lock:
                if self._stopped.is_set():
                    return
                watcher: Any = watch.Watch()   # type: ignore[no-untyped-call]
                self._watch = watcher
            try:
                for event in watcher.stream(self.owner._client.get, resource, namespace=self.scope.namespace,
                                                label_selector=selector, resource_version=version,
                                                timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
                                                serialize=False):
                    kind = event.get("type")
                    obj = event.get("raw_object") or {}
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.owner._counted()
                        obj.setdefault("apiVersion", resource.group_version)
                        obj.setdefault("kind", resource.kind)
                        self.owner._seen(obj, deleted=kind == "DELETED")
                    if self._stopped.is_set():
                        return
            except ApiException as error:
                if error.status == HTTP_GONE:
                    raise _Gone() from None
                raise
            finally:
                with self._lock:
                    self._watch = None


class _Gone(Exception):
    """The stream's resourceVersion is older than the server keeps: LIST again."""
