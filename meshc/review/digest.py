"""What decides which services can differ between two meshes, small enough to send between processes.

`meshc diff` checks its two revisions in two processes (meshc.review.forked); neither holds both
meshes, so instead of comparing the IR (`pipeline.changed_services`, `affected_services`) they
compare digests of it: per service, a hash of the service and of what its callers see of it, and
the names it calls. The rules are the same as the pipeline's (tests/review/test_forked.py holds
them to giving the same sets); only the comparison is of hashes instead of objects.

A digest is Python's `hash()` of the frozen IR, which, like IR equality, leaves spans out. String
hashes are keyed per process, so digests are comparable only between a process and the ones it
forked (they share the key). Equal services always give equal digests; two different ones could
give the same 64-bit value only by a collision, so a change could be missed with a chance of the
order of 2^-64 per changed service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshc.pipeline import _as_callee, _callees, _mesh_wide
from meshc.resolve import ir


@dataclass(frozen=True, slots=True)
class ServiceDigest:
    whole: int                   # hash of the service (spans aside): equal when its IR is
    as_callee: int               # hash of what its callers' files are made from
    callees: frozenset[str]      # the services its own files say something of
    deployed: bool


@dataclass(frozen=True, slots=True)
class MeshDigest:
    mesh_wide: int               # hash of every setting but the services and gateways
    services: Mapping[str, ServiceDigest]


def digest(mesh: ir.Mesh) -> MeshDigest | None:
    """The mesh's digest; None if some part of the IR cannot be hashed (then everything may differ)."""
    try:
        return MeshDigest(hash(_mesh_wide(mesh)), {
            service.name: ServiceDigest(hash(service), hash(_as_callee(service)), frozenset(_callees(service)),
                                        service.deployed)
            for service in mesh.services})
    except TypeError:
        return None


def what_can_differ(old: MeshDigest | None,
                    new: MeshDigest | None) -> tuple[set[str] | None, frozenset[str] | None]:
    """(changed, affected) as `pipeline.changed_services` and `affected_services` give them: the
    services added, removed or different, and the deployed services of `new` whose files can
    differ (None: every file may, as a mesh-wide setting changed). (None, None) without digests."""
    if old is None or new is None:
        return None, None
    before, after = old.services, new.services
    changed = {name for name in before.keys() | after.keys()
               if name not in before or name not in after or before[name].whole != after[name].whole}
    if old.mesh_wide != new.mesh_wide:
        return changed, None
    seen_changed = {name for name in changed
                    if name not in before or name not in after or before[name].as_callee != after[name].as_callee}

    def affected(name: str, service: ServiceDigest) -> bool:
        return name in changed or bool(seen_changed & service.callees) or bool(seen_changed & before[name].callees)

    return changed, frozenset(name for name, service in after.items() if service.deployed and affected(name, service))
