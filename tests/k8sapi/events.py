"""The watch history of the test double: every committed change, as a watch stream serves it.

Like kube-apiserver over etcd, the history is bounded: events older than the compacted revision
are gone, and a watch asking to resume before it gets a 410 Gone ("too old resource version")
ERROR event, after which a client must LIST again. Bookmarks are sent on request
(`allowWatchBookmarks=true`) when a stream has been idle for a while.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.k8sapi.catalog import ResourceType

Object = dict[str, Any]
DEFAULT_HISTORY = 20_000     # events kept; older resource versions answer 410 Gone
BOOKMARK_EVERY = 60.0        # seconds of an idle stream between bookmarks (when asked for), as kube-apiserver


@dataclass(frozen=True)
class Event:
    revision: int
    type: str            # ADDED, MODIFIED, DELETED
    resource: ResourceType
    namespace: str
    object: Object       # never changed after it is recorded


class TooOld(Exception):
    """The asked-for resource version is older than the history kept."""


class EventLog:
    def __init__(self, lock: threading.RLock, history: int = DEFAULT_HISTORY) -> None:
        self._changed = threading.Condition(lock)
        self._history = history
        self._events: list[Event] = []
        self._revisions: list[int] = []
        self._compacted = 0      # events up to this revision are gone
        self._generation = 0     # bumped by end_streams: open streams end, as at a server restart
        self.closed = False
        self.expired = 0         # watches answered 410 Gone
        self.bookmark_every = BOOKMARK_EVERY

    def record(self, event: Event) -> None:
        """Called with the store's lock held."""
        self._events.append(event)
        self._revisions.append(event.revision)
        if len(self._events) > 2 * self._history:
            self._drop(len(self._events) - self._history)
        self._changed.notify_all()

    def compact(self, revision: int) -> None:
        """Forget every event up to `revision` (a test hook: what etcd compaction does)."""
        with self._changed:
            self._drop(bisect.bisect_right(self._revisions, revision))
            self._compacted = max(self._compacted, revision)

    def _drop(self, count: int) -> None:
        if count <= 0:
            return
        self._compacted = max(self._compacted, self._revisions[count - 1])
        del self._events[:count], self._revisions[:count]

    def _after(self, revision: int) -> list[Event]:
        return self._events[bisect.bisect_right(self._revisions, revision):]

    def end_streams(self) -> None:
        """End every open stream cleanly (the server's timeout, a restart): clients resume."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def follow(self, after: int, matches: Callable[[Event], bool], deadline: float,
               clock: Callable[[], float]) -> Iterator[Event | int]:
        """Events after revision `after` that match, oldest first, waiting for new ones until
        `deadline`; the revision reached (for a bookmark) when `bookmark_every` passed without one.
        Raises TooOld."""
        with self._changed:
            if after < self._compacted:
                self.expired += 1
                raise TooOld(after)
        position = after
        generation = self._generation
        while not self.closed and generation == self._generation:
            with self._changed:
                if position < self._compacted:
                    raise TooOld(position)
                batch = self._after(position)
                if not batch:
                    left = deadline - clock()
                    if left <= 0:
                        return
                    self._changed.wait(min(left, self.bookmark_every))
                    if generation != self._generation:
                        return
                    batch = self._after(position)
                    if not batch:
                        if clock() < deadline:
                            yield position
                        continue
            for event in batch:
                position = event.revision
                if matches(event):
                    yield event


def snapshot(obj: Object, resource: ResourceType, revision: int | None = None) -> Object:
    """The object as a watch event carries it: with kind and apiVersion (a deleted one with the
    revision of its deletion). Shares nested values with the stored object, which is never
    changed in place."""
    event = {"apiVersion": resource.api_version, "kind": resource.kind, **obj}
    if revision is not None:
        event["metadata"] = {**obj["metadata"], "resourceVersion": str(revision)}
    return event
