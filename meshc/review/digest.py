"""What decides which services can differ between two meshes, small enough to send between processes.

`meshc diff` checks its two revisions in two processes (meshc.review.forked); neither holds both
meshes, so instead of comparing the IR (`pipeline.changed_services`, `affected_services`) they
compare digests of it: per service, a hash of the service and the names it calls; then, of the
services that changed, a hash of what their callers see of them. The rules are the same as the pipeline's (tests/review/test_forked.py holds
them to giving the same sets); only the comparison is of hashes instead of objects.

A digest is Python's `hash()` of the frozen IR, which, like IR equality, leaves spans out. String
hashes are keyed per process, so digests are comparable only between a process and the ones it
forked (they share the key). Equal services always give equal digests; two different ones could
give the same 64-bit value only by a collision, so a change could be missed with a chance of the
order of 2^-64 per changed service.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from meshc.pipeline import as_callee, callees_of, mesh_wide
from meshc.resolve import ir


@dataclass(frozen=True, slots=True)
class ServiceDigest:
    whole: int                   # hash of the service (spans aside): equal when its IR is
    callees: frozenset[str]      # the services its own files say something of
    deployed: bool


@dataclass(frozen=True, slots=True)
class MeshDigest:
    mesh_wide: int               # hash of every setting but the services and gateways
    services: Mapping[str, ServiceDigest]


def digest(mesh: ir.Mesh) -> MeshDigest | None:
    """The mesh's digest; None if some part of the IR cannot be hashed (then everything may differ)."""
    try:
        return MeshDigest(hash(mesh_wide(mesh)), {
            service.name: ServiceDigest(hash(service), frozenset(callees_of(service)), service.deployed)
            for service in mesh.services})
    except TypeError:
        return None


def callee_digests(mesh: ir.Mesh, names: Collection[str]) -> dict[str, int]:
    """Of these services, a hash of what their callers' files are made from (`as_callee`).
    Only the changed services need it, so it is asked for them alone."""
    return {service.name: hash(as_callee(service)) for service in mesh.services if service.name in names}


def changed(old: MeshDigest | None, new: MeshDigest | None) -> set[str] | None:
    """The services added, removed or different (`pipeline.changed_services`); None without digests."""
    if old is None or new is None:
        return None
    before, after = old.services, new.services
    return {name for name in before.keys() | after.keys()
            if name not in before or name not in after or before[name].whole != after[name].whole}


def in_both(old: MeshDigest, new: MeshDigest, names: Collection[str]) -> set[str]:
    """Those of `names` that are services of both meshes: whose callee digests `affected` compares."""
    return {name for name in names if name in old.services and name in new.services}


def affected(old: MeshDigest | None, new: MeshDigest | None, changed: set[str] | None,
             old_callees: Mapping[str, int], new_callees: Mapping[str, int]) -> frozenset[str] | None:
    """The deployed services of `new` whose files can differ (`pipeline.affected_services`), from
    the changed services and the callee digests of those in both (`in_both`); None when every file
    may (a mesh-wide setting changed, or no digests)."""
    if old is None or new is None or changed is None or old.mesh_wide != new.mesh_wide:
        return None
    before = old.services
    seen_changed = {name for name in changed
                    if name not in old_callees or name not in new_callees or old_callees[name] != new_callees[name]}

    def can_differ(name: str, service: ServiceDigest) -> bool:
        return name in changed or bool(seen_changed & service.callees) or bool(seen_changed & before[name].callees)

    return frozenset(name for name, service in new.services.items() if service.deployed and can_differ(name, service))
