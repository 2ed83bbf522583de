"""The small interface every sync target implements: read live state, plan, apply (incl. prune)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

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


@dataclass(frozen=True)
class Plan:
    target: str                                   # "kubernetes", "etcd", "directory"
    changes: tuple[Change, ...]
    revision: str | None = None                   # the commit being applied, if known
    state_token: str | None = None                # what the plan was made against (etcd revision, ...)

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.UNCHANGED)

    @property
    def empty(self) -> bool:
        return not self.writes


@dataclass
class ApplyResult:
    target: str
    applied: list[Change] = field(default_factory=list)
    write_requests: int = 0                       # requests that changed (or tried to change) live state


class TransientError(Exception):
    """The target failed in a way that retrying later can fix (5xx, 409, timeouts, etcd down)."""


class PermanentError(Exception):
    """Retrying will not help (bad credentials, forbidden, refused prune) until something changes."""


class Target(Protocol):
    name: str

    def plan(self, bundle: Bundle, *, revision: str | None = None) -> Plan:
        """Compare the bundle with live state; changes nothing."""
        ...

    def apply(self, plan: Plan, bundle: Bundle) -> ApplyResult:
        """Carry out a plan made by this target. Raises TransientError/PermanentError."""
        ...
