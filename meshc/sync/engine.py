"""One sync: plan every target, check the prune guards, then apply; what apply/watch both run.

A sync may be given the previous bundle, known to be live (watch keeps the one it last applied):
targets then plan only what differs between the two bundles. If a target's live record of the
applied revision names another commit than `previous` (someone else synced since), or shows that
the revision was compiled to another bundle than `previous` (etcd's manifest digest: other build
options), the incremental plans are dropped and every target is planned in full.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from meshc.bundle import Bundle
from meshc.sync.rename import identity_of, removal_plans, rename_refusal
from meshc.sync.target import (
    Action, ApplyResult, Change, Interrupt, Interrupted, MeshIdentity, PermanentError, Plan, StalePlan, Target,
)

DEFAULT_PRUNE_LIMIT = 20
MAX_REPLANS = 3   # a target whose live state keeps moving under us is left for the next sync


class PruneRefused(PermanentError):
    """The plan deletes more than allowed; nothing was written."""

    def __init__(self, reasons: Sequence[str], plans: Sequence[Plan]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)
        self.plans = list(plans)


class MeshRenameRefused(PruneRefused):
    """The mesh's name or namespace changed while the old mesh is live, and the rename was not
    allowed; nothing was written."""

    def __init__(self, old: Sequence[MeshIdentity], new: MeshIdentity, plans: Sequence[Plan]) -> None:
        super().__init__([rename_refusal(old, new)], plans)
        self.old = list(old)
        self.new = new


@dataclass
class SyncPlan:
    """Every target's plan for the bundle, and the plans that prune a renamed mesh's old self."""

    new: MeshIdentity
    plans: list[Plan]
    renamed_from: list[MeshIdentity] = field(default_factory=list)
    removals: list[tuple[Target, Plan]] = field(default_factory=list)

    @property
    def all_plans(self) -> list[Plan]:
        return self.plans + [plan for _, plan in self.removals]

    def refusals(self, *, prune_limit: int, allow_prune_all: bool, allow_mesh_rename: bool) -> list[str]:
        """Why this must not be applied as it is; empty when every guard passes."""
        reasons = []
        if self.renamed_from and not allow_mesh_rename:
            reasons.append(rename_refusal(self.renamed_from, self.new))
        plans = self.all_plans
        if self.renamed_from and allow_mesh_rename:
            # the consent to prune the old mesh covers a target emptied of it (etcd, same prefix)
            plans = [replace(plan, empties=False) if plan.applied_meshes else plan for plan in plans]
        return reasons + prune_refusals(plans, prune_limit=prune_limit, allow_prune_all=allow_prune_all)


def plan_sync(bundle: Bundle, targets: Sequence[Target], *, revision: str | None = None,
              previous: Bundle | None = None, previous_revision: str | None = None,
              previous_meshes: Sequence[MeshIdentity] = (), interrupt: Interrupt | None = None) -> SyncPlan:
    """plan_targets, and for a mesh applied before under another name or namespace (from
    `previous_meshes` or the targets' own records) the plans that would prune it."""
    plans = plan_targets(bundle, targets, revision=revision, previous=previous, previous_revision=previous_revision,
                         interrupt=interrupt)
    renamed, removals = removal_plans(bundle, targets, plans, previous_meshes)
    return SyncPlan(identity_of(bundle), plans, renamed, removals)


@dataclass
class SyncReport:
    revision: str | None
    plans: list[Plan]
    results: list[ApplyResult] = field(default_factory=list)
    dry_run: bool = False
    replans: int = 0                  # plans made again because live state moved (etcd txn lost)
    duration_s: float = 0.0

    @property
    def changed(self) -> bool:
        """Content was (or, dry run, would be) written: more than the revision records."""
        if self.dry_run:
            return any(not plan.empty for plan in self.plans)
        return any(not change.bookkeeping for result in self.results for change in result.applied)

    @property
    def recorded(self) -> list[tuple[str, Change]]:
        """The revision records written, as (target, change): etcd `<prefix>/revision`, the
        directory's manifest.json. A new commit updates them even when it changes no content."""
        return [(result.target, change) for result in self.results for change in result.applied
                if change.bookkeeping and change.action is not Action.DELETE]

    @property
    def incremental(self) -> bool:
        """Some target planned only what differs from the previous bundle."""
        return any(plan.incremental for plan in self.plans)

    @property
    def write_requests(self) -> int:
        return sum(result.write_requests for result in self.results)

    def result(self, target: str) -> ApplyResult | None:
        return next((r for r in self.results if r.target == target), None)


def bundle_revision(bundle: Bundle, revision: str | None = None) -> str:
    """What the sync records as applied: the commit, else the spec digest of the bundle."""
    if revision:
        return revision
    source = bundle.manifest.get("source") or {}
    return str(source.get("revision") or source.get("digest") or "")


def plan_targets(bundle: Bundle, targets: Sequence[Target], *, revision: str | None = None,
                 previous: Bundle | None = None, previous_revision: str | None = None,
                 interrupt: Interrupt | None = None) -> list[Plan]:
    """Every target's plan; nothing is written. A target that cannot be read raises.

    With `previous` (a bundle live on every target, applied as `previous_revision`), targets may
    plan incrementally; that is undone, and every target planned in full, when a target's live
    record names another revision or another bundle (Plan.contradicts_previous). `interrupt` is asked before each target's plan and handed to
    it: when it returns True, Interrupted is raised.
    """
    rev = bundle_revision(bundle, revision)
    if previous is not None:
        plans = _plan_each(bundle, targets, rev, previous, interrupt)
        expected = {bundle_revision(previous, previous_revision), bundle_revision(previous)}
        if all((plan.recorded is None or plan.recorded in expected) and not plan.contradicts_previous
               for plan in plans):
            return plans
    return _plan_each(bundle, targets, rev, None, interrupt)


def _plan_each(bundle: Bundle, targets: Sequence[Target], revision: str, previous: Bundle | None,
               interrupt: Interrupt | None) -> list[Plan]:
    plans = []
    for target in targets:
        if interrupt is not None and interrupt():
            raise Interrupted(f"the plan was set aside before {target.name}")
        plans.append(target.plan(bundle, revision=revision, previous=previous, interrupt=interrupt))
    return plans


def prune_refusals(plans: Sequence[Plan], *, prune_limit: int = DEFAULT_PRUNE_LIMIT,
                   allow_prune_all: bool = False) -> list[str]:
    """Why these plans must not be applied as they are; empty when the prune guards pass."""
    if allow_prune_all:
        return []
    reasons = []
    for plan in plans:
        deletes = plan.count(Action.DELETE)
        if plan.empties and deletes:
            reasons.append(f"{plan.target}: the plan deletes everything the mesh has there ({deletes} to delete); "
                           "pass --allow-prune-all if that is intended")
        elif deletes > prune_limit:
            reasons.append(f"{plan.target}: the plan deletes {deletes} objects, more than --prune-limit "
                           f"{prune_limit}; raise the limit or pass --allow-prune-all")
    return reasons


def sync_once(bundle: Bundle, targets: Sequence[Target], *, revision: str | None = None, dry_run: bool = False,
              prune_limit: int = DEFAULT_PRUNE_LIMIT, allow_prune_all: bool = False,
              previous: Bundle | None = None, previous_revision: str | None = None,
              interrupt: Interrupt | None = None, previous_meshes: Sequence[MeshIdentity] = (),
              allow_mesh_rename: bool = False) -> SyncReport:
    """Plan every target, then (unless dry_run) apply the plans in the order of `targets`.

    Nothing is written unless every target could be planned and the prune guards pass. Only
    targets with something to write are applied: a new commit that changes no output updates
    only the revision records (etcd `<prefix>/revision`, the directory's manifest.json), and a
    sync of the revision already recorded writes nothing at all. `previous` and `interrupt`: see
    plan_targets (an interrupt is only asked while planning: an apply, once begun, is finished).
    A target whose live state moved since its plan (StalePlan) is planned again in full, guards
    re-checked, at most MAX_REPLANS times. Raises PruneRefused, TransientError or
    PermanentError; targets applied before an error keep what they applied.

    A mesh applied before under another name or namespace (`previous_meshes`, or what the
    targets record) that is still live makes the sync refuse (MeshRenameRefused) unless
    `allow_mesh_rename`; then the old mesh is pruned once the new one is applied.
    """
    started = time.monotonic()
    planned = plan_sync(bundle, targets, revision=revision, previous=previous, previous_revision=previous_revision,
                        previous_meshes=previous_meshes, interrupt=interrupt)
    if planned.renamed_from and not allow_mesh_rename:
        raise MeshRenameRefused(planned.renamed_from, planned.new, planned.all_plans)
    reasons = planned.refusals(prune_limit=prune_limit, allow_prune_all=allow_prune_all,
                               allow_mesh_rename=allow_mesh_rename)
    if reasons:
        raise PruneRefused(reasons, planned.all_plans)
    plans = planned.plans
    report = SyncReport(bundle_revision(bundle, revision), plans, dry_run=dry_run)
    if not dry_run:
        for index, target in enumerate(targets):
            if plans[index].writes:
                report.results.append(_apply_with_replans(target, index, bundle, report, prune_limit,
                                                          allow_prune_all, allow_mesh_rename))
        for target, removal in planned.removals:
            report.results.append(target.apply(removal, bundle))
    report.plans = plans + [plan for _, plan in planned.removals]
    report.duration_s = time.monotonic() - started
    return report


def _check_guards(plans: Sequence[Plan], prune_limit: int, allow_prune_all: bool) -> None:
    reasons = prune_refusals(plans, prune_limit=prune_limit, allow_prune_all=allow_prune_all)
    if reasons:
        raise PruneRefused(reasons, plans)


def _apply_with_replans(target: Target, index: int, bundle: Bundle, report: SyncReport, prune_limit: int,
                        allow_prune_all: bool, allow_mesh_rename: bool) -> ApplyResult:
    attempt = 0
    while True:
        try:
            return target.apply(report.plans[index], bundle)
        except StalePlan:
            attempt += 1
            if attempt > MAX_REPLANS:
                raise
        report.replans += 1
        report.plans[index] = target.plan(bundle, revision=report.revision)
        again = report.plans[index]
        if allow_mesh_rename and again.applied_meshes:
            again = replace(again, empties=False)    # consented to with the rename
        _check_guards([again], prune_limit, allow_prune_all)
