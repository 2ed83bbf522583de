"""A change of the mesh's name or namespace between the applied state and the new bundle.

Renaming `metadata.name` (or moving `spec.namespace`) makes a new mesh on every target; the old
one would keep running, unpruned, since its objects carry the old labels. So a sync looks for
the mesh that was applied before: the previous bundle (`meshc watch`), the spec at the parent
commit (`--repo`), and what the targets themselves record (etcd's `<prefix>/current`, the
labels of the Namespace). If such a mesh is still live, the sync is refused unless the caller
allows the rename; then the old mesh's objects and keys are pruned after the new mesh is
applied, under the same guards as any prune (labels re-checked on each live object, guarded
etcd transactions, only keys meshc's ledgers list, --prune-limit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from meshc.bundle import Bundle
from meshc.emit.naming import NAMESPACE_PATH
from meshc.load import SpecSource
from meshc.sync.target import MeshIdentity, Plan, Target

DEFAULT_PREFIX_ROOT = "/meshc"


def rename_refusal(old: Sequence[MeshIdentity], new: MeshIdentity) -> str:
    names = ", ".join(str(identity) for identity in old)
    return (f"the mesh was applied as {names} and is now {new}; the old mesh is still live: pass "
            "--allow-mesh-rename to apply the new one and prune the old")


def identity_of(bundle: Bundle) -> MeshIdentity:
    """The bundle's mesh: its name, the Namespace it creates, its etcd prefix."""
    namespace = ""
    if NAMESPACE_PATH in bundle.files:
        for document in bundle.documents(NAMESPACE_PATH):
            if isinstance(document, dict) and document.get("kind") == "Namespace":
                namespace = str((document.get("metadata") or {}).get("name") or "")
    prefix = str(bundle.etcd_seed().get("prefix") or "").rstrip("/") or None
    return MeshIdentity(str(bundle.manifest.get("mesh") or ""), namespace, prefix)


def identity_of_spec(source: SpecSource) -> MeshIdentity | None:
    """The identity a spec declares (name, namespace, etcd prefix, with the defaults), read
    without compiling it; None when the spec cannot be read that far."""
    from meshc.load.yaml_loader import load_yaml

    data: Any = load_yaml(source).data
    if not isinstance(data, dict):
        return None
    metadata, spec = data.get("metadata"), data.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        return None
    fields: dict[str, Any] = spec if isinstance(spec, dict) else {}
    namespace = fields.get("namespace") if isinstance(fields.get("namespace"), str) else name
    etcd: dict[str, Any] = fields["etcd"] if isinstance(fields.get("etcd"), dict) else {}
    prefix = etcd.get("prefix") if isinstance(etcd.get("prefix"), str) else f"{DEFAULT_PREFIX_ROOT}/{name}"
    return MeshIdentity(name, str(namespace), str(prefix).rstrip("/") or None)


def renamed_from(new: MeshIdentity, plans: Sequence[Plan], previous: Iterable[MeshIdentity]) -> list[MeshIdentity]:
    """Meshes other than `new` that were applied before, as far as the caller and the targets know."""
    seen: list[MeshIdentity] = []
    for identity in [*previous, *(i for plan in plans for i in plan.applied_meshes)]:
        if not identity.same_mesh(new) and not any(identity.same_mesh(other) for other in seen):
            seen.append(identity)
    return seen


def removal_plans(bundle: Bundle, targets: Sequence[Target], plans: Sequence[Plan],
                  previous: Iterable[MeshIdentity]) -> tuple[list[MeshIdentity], list[tuple[Target, Plan]]]:
    """The old meshes that are live, and per target the plan that prunes each of them.

    A mesh counts as live when a target still holds something of it: a removal plan with
    writes, or a target's own record naming it (etcd's pointer under an unchanged prefix, whose
    records the bundle's plan replaces in place).
    """
    new = identity_of(bundle)
    live: list[MeshIdentity] = []
    removals: list[tuple[Target, Plan]] = []
    recorded = [i for plan in plans for i in plan.applied_meshes]
    for old in renamed_from(new, plans, previous):
        found = any(old.same_mesh(identity) for identity in recorded)
        for target in targets:
            plan_removal = getattr(target, "removal_plan", None)
            if plan_removal is None:
                continue
            plan: Plan | None = plan_removal(old, new)
            if plan is not None and plan.writes:
                removals.append((target, plan))
                found = True
        if found:
            live.append(old)
    return live, removals
