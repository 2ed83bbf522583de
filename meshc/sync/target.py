"""The small interface every sync target implements: read live state, plan, apply (incl. prune)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from meshc.bundle import Bundle


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"     # prune: live object/key/file no longer desired
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Change:
    """One object, key or file and what applying the plan does to it."""

    action: Action
    key: str              # e.g. "apps/v1 Deployment shop/catalog-v1", "/meshc/shop/services/catalog", "envoy/x/cds.yaml"
    detail: str = ""      # a short human reason ("config-hash 1a2b -> 3c4d", "drift: spec.replicas")
    # True for the records of the sync itself (etcd `<prefix>/revision`, the directory's
    # manifest.json): they name the commit that is live, so a new commit updates them even when it
    # changes no content; they never count as content (a no-op commit writes only them, and
    # re-syncing the same commit writes nothing at all).
    bookkeeping: bool = False


@dataclass(frozen=True, slots=True)
class MeshIdentity:
    """What names a mesh on the targets: its name (the `meshc.dev/mesh` label), its Kubernetes
    namespace and its etcd prefix (None when not known: the default `/meshc/<name>` is tried)."""

    name: str
    namespace: str
    prefix: str | None = None

    def same_mesh(self, other: MeshIdentity) -> bool:
        return self.name == other.name and self.namespace == other.namespace

    def __str__(self) -> str:
        return f"{self.name} (namespace {self.namespace})"


@dataclass(frozen=True)
class Plan:
    target: str                                   # "kubernetes", "etcd", "directory"
    changes: tuple[Change, ...]
    revision: str | None = None                   # the commit being applied, if known
    state_token: str | None = None                # what the plan was made against (etcd revision, ...)
    # Applying would remove everything of the mesh's services this target holds now, or delete
    # something that takes everything with it (a Namespace): the engine refuses without consent.
    empties: bool = False
    # The revision the target's live records name (etcd `<prefix>/revision`, the source of the
    # directory's manifest.json); "" when they name none; None for a target that keeps no record.
    recorded: str | None = None
    # Planned against a previous bundle (only the objects of files that differ), not the whole mesh.
    incremental: bool = False
    # The target's live records show that the previous bundle it was given is not what was applied
    # there, although they name its revision (etcd: the recorded manifest digest is another
    # bundle's, e.g. one compiled with other build options, or none is recorded): the engine then
    # plans every target in full.
    contradicts_previous: bool = False
    # Meshes other than the bundle's that this target's live records name (a rename of the mesh
    # or a move of its namespace since they were applied).
    applied_meshes: tuple[MeshIdentity, ...] = ()
    # Things a person should know that are not changes (e.g. foreign keys left alone).
    notes: tuple[str, ...] = ()
    # What the target itself needs to carry the plan out (e.g. etcd mod revisions it saw); not shown.
    context: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.UNCHANGED)

    @property
    def content_writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.writes if not c.bookkeeping)

    @property
    def deletes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is Action.DELETE)

    @property
    def bookkeeping_writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.writes if c.bookkeeping)

    @property
    def empty(self) -> bool:
        """No content would change (the revision records may still be updated)."""
        return not self.content_writes

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action and not c.bookkeeping)


@dataclass
class ApplyResult:
    target: str
    applied: list[Change] = field(default_factory=list)
    write_requests: int = 0                       # requests that changed (or tried to change) live state


class SyncError(Exception):
    """A target could not be read or written."""

    partial: ApplyResult | None = None    # what the failing apply had done before the error
    status: int | None = None             # the API's status code, when the error is an answer


class TransientError(SyncError):
    """The target failed in a way that retrying later can fix (5xx, 409, timeouts, etcd down)."""


class StalePlan(TransientError):
    """Live state moved between plan and apply (a concurrent writer): plan again, never clobber."""


class PermanentError(SyncError):
    """Retrying will not help (bad credentials, forbidden, refused prune) until something changes."""


class Interrupted(SyncError):
    """The caller asked to set the plan aside (a new commit is waiting); nothing was written."""


Interrupt = Callable[[], bool]    # asked between the requests of a long plan: True abandons it


class Target(Protocol):
    name: str

    def plan(self, bundle: Bundle, *, revision: str | None = None, previous: Bundle | None = None,
             interrupt: Interrupt | None = None) -> Plan:
        """Compare the bundle with live state; changes nothing.

        `interrupt`, when given, may be called between the requests of a long plan; when it
        returns True the target raises Interrupted. A target with a short plan may ignore it.

        `previous`, when given, is a bundle known to be live on this target (the last one applied
        to it, with no failure since). A target may then plan only what differs between the two
        bundles and trust the rest to be as `previous` left it (so drift there is not seen: that is
        the job of a full plan), returning a Plan with `incremental` set. A target whose full plan
        is cheap, or that cannot confirm `previous` is live, plans everything.
        """
        ...

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        """Carry out a plan made by this target: creates and updates in order, then prunes.

        Raises TransientError (StalePlan when live state moved since the plan) or PermanentError;
        what was done before the error stays done, and the next plan starts from there.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
