"""How plans and sync results read: lines a person scans (`+ create`, `~ update (why)`,
`- delete`, one summary line) and the JSON shape for machines. Shared by plan, apply and watch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshc.sync.engine import SyncReport
from meshc.sync.target import Action, ApplyResult, Change, Plan

_SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.UNCHANGED: "="}
_PAST = {Action.CREATE: "created", Action.UPDATE: "updated", Action.DELETE: "deleted"}


def content_would_change(plans: Sequence[Plan]) -> bool:
    """Some target's content would change. Revision records alone (a new commit that changes no
    output) do not count: `plan --detailed-exitcode` and the json `changes` flag follow this."""
    return any(not plan.empty for plan in plans)


def change_line(change: Change, *, done: bool = False) -> str:
    """`  + create    KEY (why)`, or in the past tense once applied: `  ~ updated   KEY (why)`."""
    word = _PAST.get(change.action, change.action.value) if done else change.action.value
    detail = f" ({change.detail})" if change.detail else ""
    return f"  {_SYMBOLS[change.action]} {word:<9} {change.key}{detail}"


def plan_text(plans: Sequence[Plan], *, show_unchanged: bool = False) -> str:
    """Per target, what applying would do; unchanged objects are only counted. Revision records
    are listed when they would be written (a new commit), as they are."""
    blocks = []
    for plan in plans:
        shown = [c for c in plan.changes if c.action is not Action.UNCHANGED or show_unchanged]
        unchanged = plan.count(Action.UNCHANGED)
        what = "no changes" if plan.empty else f"{len(plan.content_writes)} to change"
        if plan.empty and plan.bookkeeping_writes:
            what += ", the revision record only"
        blocks.append("\n".join([f"{plan.target}: {what} ({unchanged} unchanged)", *(change_line(c) for c in shown),
                                 *(f"  ! note: {note}" for note in plan.notes)]))
    return "\n".join(blocks) + "\n"


def notes_text(plans: Sequence[Plan]) -> str:
    """`meshc: note: etcd: 2 keys ... left alone`, one line per note, for stderr."""
    return "".join(f"meshc: note: {plan.target}: {note}\n" for plan in plans for note in plan.notes)


def plan_summary(plans: Sequence[Plan]) -> str:
    """`kubernetes: 2 to create, 1 to update, 0 to delete; etcd: ...`"""
    return "; ".join(f"{plan.target}: {plan.count(Action.CREATE)} to create, {plan.count(Action.UPDATE)} to "
                     f"update, {plan.count(Action.DELETE)} to delete" for plan in plans)


def result_text(results: Sequence[ApplyResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.target}:")
        lines += [change_line(c, done=True) for c in result.applied]
    return "\n".join(lines) + "\n" if lines else ""


def report_summary(report: SyncReport) -> str:
    """`applied <rev>: kubernetes: 1 created, 0 updated, 0 deleted (1 write); ...` or `nothing to change`."""
    revision = (report.revision or "")[:12]
    if not report.changed:
        writes = report.write_requests
        recorded = f"; recorded the revision in {recorded_targets(report)}" if report.recorded else ""
        return (f"{revision}: nothing to change{recorded}; {writes} write{'s' if writes != 1 else ''} "
                f"({report.duration_s:.2f}s)")
    parts = []
    for result in report.results:
        counts = {action: sum(1 for c in result.applied if c.action is action and not c.bookkeeping)
                  for action in _PAST}
        parts.append(f"{result.target}: " + ", ".join(f"{n} {_PAST[a]}" for a, n in counts.items())
                     + f" ({result.write_requests} write{'s' if result.write_requests != 1 else ''})")
    return f"applied {revision}: " + "; ".join(parts) + f" ({report.duration_s:.2f}s)"


def recorded_targets(report: SyncReport) -> str:
    """`directory manifest.json, etcd /meshc/shop/revision`: the revision records written."""
    return ", ".join(f"{target} {change.key}" for target, change in report.recorded)


def change_json(change: Change) -> dict[str, Any]:
    data: dict[str, Any] = {"action": change.action.value, "key": change.key}
    if change.detail:
        data["detail"] = change.detail
    if change.bookkeeping:
        data["bookkeeping"] = True
    return data


def plan_json(plan: Plan, *, show_unchanged: bool = False) -> dict[str, Any]:
    return {
        "target": plan.target,
        "revision": plan.revision,
        "counts": {action.value: plan.count(action) for action in Action},
        "empties": plan.empties,
        "notes": list(plan.notes),
        "changes": [change_json(c) for c in plan.changes if show_unchanged or c.action is not Action.UNCHANGED],
    }


def plans_json(plans: Sequence[Plan], *, show_unchanged: bool = False) -> dict[str, Any]:
    return {"changes": content_would_change(plans), "targets": [plan_json(p, show_unchanged=show_unchanged)
                                                                for p in plans]}


def report_json(report: SyncReport) -> dict[str, Any]:
    return {
        "revision": report.revision,
        "dryRun": report.dry_run,
        "changed": report.changed,
        "recorded": [{"target": target, **change_json(change)} for target, change in report.recorded],
        "writeRequests": report.write_requests,
        "replans": report.replans,
        "durationSeconds": round(report.duration_s, 3),
        "plans": [plan_json(p) for p in report.plans],
        "results": [{"target": r.target, "writeRequests": r.write_requests,
                     "applied": [change_json(c) for c in r.applied]} for r in report.results],
    }
