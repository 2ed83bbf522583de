"""How a MeshDiff reads: text for a terminal, JSON for tools, Markdown for a pull-request comment."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from meshc.diagnostics import Diagnostic, Span
from meshc.report import as_json, format_text
from meshc.review.consequences import OutputChange
from meshc.review.diff import Action, MeshDiff, Side, SpecChange

FORMATS = ("text", "json", "markdown")
MARKER = "<!-- meshc-diff -->"   # lets a CI job find and update its previous comment
MAX_TABLE_ROWS = 200
TARGET_TITLES = {"kubernetes": "Kubernetes objects", "etcd": "etcd keys", "envoy": "Envoy files", "file": "Other files"}
_SIGNS = {"added": "+", "changed": "~", "removed": "-"}
_COLORS = {"added": "32", "changed": "33", "removed": "31"}
_SUMMARY_FIELDS = {
    "service": ("kind", "port", "protocol", "loadBalancer"),
    "version": ("weight", "image", "replicas"),
    "endpoint": ("weight",),
    "route": ("localPort", "timeout", "failurePolicy", "retries"),
    "mesh": ("namespace",),
}


def render(diff: MeshDiff, fmt: str, color: bool = False) -> str:
    if fmt == "json":
        return json.dumps(as_dict(diff), indent=2, sort_keys=False) + "\n"
    if fmt == "markdown":
        return markdown(diff)
    return text(diff, color)


# --- values -------------------------------------------------------------------------------

def show(value: Any) -> str:
    """A value as mesh.yaml would spell it (flow style), None as `unset`."""
    if value is None:
        return "unset"
    return _flow(value)


def _flow(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def summary_of(change: SpecChange) -> str:
    """For a whole subject added or removed: its main values."""
    values = change.new if change.action is Action.ADDED else change.old
    if not isinstance(values, dict):
        return ""
    fields = _SUMMARY_FIELDS.get(change.kind, ())
    parts = [f"{name} {show(_policy(values[name]))}" for name in fields if values.get(name) is not None]
    return ", ".join(parts)


def _policy(value: Any) -> Any:
    # `loadBalancer: {policy: least_request}` reads better as its policy name.
    if isinstance(value, dict) and set(value) == {"policy", "hashOn"} and value["hashOn"] is None:
        return value["policy"]
    return value


def describe(change: SpecChange) -> str:
    if change.action is Action.CHANGED:
        return f"{change.subject}: {change.field} {show(change.old)} -> {show(change.new)}"
    details = summary_of(change)
    return f"{change.subject} {change.action.value}" + (f" ({details})" if details else "")


def _span_text(span: Span | None) -> str:
    return str(span) if span else "?"


def _where(change: SpecChange, old: Side, new: Side) -> str:
    parts = []
    if change.old_span is not None:
        parts.append(f"{_span_text(change.old_span)} ({old.label})")
    if change.new_span is not None:
        parts.append(f"{_span_text(change.new_span)} ({new.label})")
    return " -> ".join(parts)


def _counts(actions: Iterable[str]) -> dict[str, int]:
    counts = {"added": 0, "changed": 0, "removed": 0}
    for action in actions:
        counts[action] += 1
    return counts


def _side_title(side: Side) -> str:
    return f"{side.label} ({side.short})" if side.short and side.short != side.label[:12] else side.label


# --- text ---------------------------------------------------------------------------------

def text(diff: MeshDiff, color: bool = False) -> str:
    def paint(action: str, line: str) -> str:
        return f"\033[{_COLORS[action]}m{line}\033[0m" if color else line

    old, new = diff.old, diff.new
    out = [f"meshc diff {new.path}: {_side_title(old)} -> {_side_title(new)}"]
    out += _absence_lines(diff)
    if not diff.changed:
        out.append("no changes: both revisions compile to the same mesh")
        return "\n".join(out) + "\n"
    counts = _counts(c.action.value for c in diff.spec_changes)
    out += ["", f"spec: {_count_text(counts)}"]
    for change in diff.spec_changes:
        out.append(paint(change.action.value, f"  {_SIGNS[change.action.value]} {describe(change)}"))
        out.append(f"      at {_where(change, old, new)}")
    out += _access_lines(diff, paint)
    out += _warning_lines("warnings introduced", diff.warnings_added)
    out += _warning_lines("warnings resolved", diff.warnings_resolved)
    if diff.consequences_note:
        out += ["", f"consequences: not computed: {diff.consequences_note}"]
    for target, changes in _by_target(diff.output_changes):
        out += ["", f"{target}: {_count_text(_counts(c.action for c in changes))}"]
        for output in changes:
            line = f"  {_SIGNS[output.action]} {output.name}"
            if output.details:
                line += ": " + ", ".join(output.details)
            out.append(paint(output.action, line))
    return "\n".join(out) + "\n"


def _absence_lines(diff: MeshDiff) -> list[str]:
    return [f"note: {side.path} does not exist at {side.label}" for side in (diff.old, diff.new) if not side.exists]


def _count_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {action}" for action, n in counts.items() if n) or "no changes"


def _warning_lines(title: str, diagnostics: Sequence[Diagnostic]) -> list[str]:
    if not diagnostics:
        return []
    return ["", f"{title}: {len(diagnostics)}"] + [f"  {format_text(d, hints=False)}" for d in diagnostics]


def _by_target(changes: Sequence[OutputChange]) -> list[tuple[str, list[OutputChange]]]:
    groups: dict[str, list[OutputChange]] = {}
    for change in changes:
        groups.setdefault(change.target, []).append(change)
    return [(TARGET_TITLES[target], items) for target, items in groups.items()]


# --- json ---------------------------------------------------------------------------------

def as_dict(diff: MeshDiff) -> dict[str, Any]:
    return {
        "changed": diff.changed,
        "spec": diff.new.path,
        "old": _side_dict(diff.old),
        "new": _side_dict(diff.new),
        "specChanges": [_change_dict(c) for c in diff.spec_changes],
        "outputChanges": [{"target": c.target, "action": c.action, "name": c.name, "file": c.file,
                           "details": list(c.details)} for c in diff.output_changes],
        "accessChanges": [_access_dict(c) for c in diff.access_changes],
        "warningsIntroduced": [as_json(d) for d in diff.warnings_added],
        "warningsResolved": [as_json(d) for d in diff.warnings_resolved],
        "consequencesNote": diff.consequences_note,
    }


def _side_dict(side: Side) -> dict[str, Any]:
    return {"label": side.label, "revision": side.revision, "exists": side.exists}


def _change_dict(change: SpecChange) -> dict[str, Any]:
    return {"action": change.action.value, "kind": change.kind, "subject": change.subject,
            "service": change.service, "field": change.field or None, "old": change.old, "new": change.new,
            "oldPosition": _span_dict(change.old_span), "newPosition": _span_dict(change.new_span)}


def _span_dict(span: Span | None) -> dict[str, Any] | None:
    return None if span is None else {"file": span.file, "line": span.line, "col": span.col}


# --- markdown -----------------------------------------------------------------------------

def markdown(diff: MeshDiff) -> str:
    old, new = diff.old, diff.new
    out = [MARKER, f"### meshc diff: `{new.path}` from {_md_side(old)} to {_md_side(new)}", ""]
    out += [f"> `{side.path}` does not exist at `{side.label}`." for side in (old, new) if not side.exists]
    if not diff.changed:
        out.append("**No changes**: both revisions compile to the same mesh.")
        return "\n".join(out) + "\n"
    out += _summary_table(diff)
    out += _access_markdown(diff)
    if diff.warnings_added:
        out += ["", f"**{len(diff.warnings_added)} new warning{'s' * (len(diff.warnings_added) != 1)}:**", ""]
        out += [f"- `{d.code}` {_md_span(d.span)}: {_md_inline(d.message)}" for d in diff.warnings_added]
    if diff.warnings_resolved:
        out += ["", f"{len(diff.warnings_resolved)} warning{'s' * (len(diff.warnings_resolved) != 1)} resolved:", ""]
        out += [f"- ~~`{d.code}`~~ {_md_inline(d.message)}" for d in diff.warnings_resolved]
    out += _spec_details(diff)
    if diff.consequences_note:
        out += ["", f"_Consequences not computed: {_md_inline(diff.consequences_note)}._"]
    for target, changes in _by_target(diff.output_changes):
        out += _output_details(target, changes)
    return "\n".join(out) + "\n"


def _md_side(side: Side) -> str:
    named = f"`{_md_code(side.label)}`"
    return f"{named} (`{side.short}`)" if side.short and side.short != side.label[:12] else named


def _summary_table(diff: MeshDiff) -> list[str]:
    rows = [("Spec", _counts(c.action.value for c in diff.spec_changes))]
    rows += [(target, _counts(c.action for c in changes)) for target, changes in _by_target(diff.output_changes)]
    lines = ["| | added | changed | removed |", "|---|---:|---:|---:|"]
    lines += [f"| {title} | {c['added']} | {c['changed']} | {c['removed']} |" for title, c in rows]
    return lines


def _spec_details(diff: MeshDiff) -> list[str]:
    lines = ["", f"<details open><summary><b>Spec changes ({len(diff.spec_changes)})</b></summary>", "",
             "| | What | Change | Where |", "|---|---|---|---|"]
    for change in diff.spec_changes:
        if change.action is Action.CHANGED:
            what = f"`{change.field}` `{_md_code(show(change.old))}` → `{_md_code(show(change.new))}`"
        else:
            what = f"{change.action.value}" + (f": {_md_inline(summary_of(change))}" if summary_of(change) else "")
        lines.append(f"| {_SIGNS[change.action.value]} | {_md_inline(change.subject)} | {what} | "
                     f"{_md_where(change, diff.old, diff.new)} |")
    return _capped(lines, 5) + ["", "</details>"]


def _md_where(change: SpecChange, old: Side, new: Side) -> str:
    if change.old_span is not None and change.new_span is not None:
        return f"`{change.old_span}` → `{change.new_span}`"
    side, span = (old, change.old_span) if change.old_span is not None else (new, change.new_span)
    return f"`{span}` in `{_md_code(side.label)}`" if span is not None else ""


def _capped(lines: list[str], header: int) -> list[str]:
    """A pull-request comment has a size limit: long tables end with a count of the rows left out."""
    rows = len(lines) - header
    if rows <= MAX_TABLE_ROWS:
        return lines
    return lines[:header + MAX_TABLE_ROWS] + [f"| | _... and {rows - MAX_TABLE_ROWS} more (see `--format json`)_ | | |"]


def _output_details(title: str, changes: Sequence[OutputChange]) -> list[str]:
    lines = ["", f"<details><summary><b>{title} ({len(changes)})</b></summary>", "",
             "| | Name | In file | What changed |", "|---|---|---|---|"]
    for change in changes:
        details = "<br>".join(_md_inline(d) for d in change.details)
        file = "" if change.file == change.name else f"`{change.file}`"
        lines.append(f"| {_SIGNS[change.action]} | `{_md_code(change.name)}` | {file} | {details} |")
    return _capped(lines, 5) + ["", "</details>"]


def _md_span(span: Span | None) -> str:
    return f"at `{span}`" if span else ""


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _md_code(text: str) -> str:
    # Inside a table cell even code spans need the pipe escaped; backticks would end the span.
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


# --- access (zero trust): permissions and mTLS modes, in a section of their own ------------

_ACCESS_SIGNS = {"granted": "+", "revoked": "-", "mode": "~"}
_ACCESS_COLORS = {"granted": "added", "revoked": "removed", "mode": "changed"}


def _access_counts(diff: MeshDiff) -> str:
    counts = {"granted": 0, "revoked": 0, "mode": 0}
    for change in diff.access_changes:
        counts[change.action] += 1
    words = {"granted": "granted", "revoked": "revoked", "mode": "mTLS mode changes"}
    return ", ".join(f"{n} {words[action]}" for action, n in counts.items() if n)


def _access_lines(diff: MeshDiff, paint: Any) -> list[str]:
    if not diff.access_changes:
        return []
    out = ["", f"access: {_access_counts(diff)}"]
    for change in diff.access_changes:
        out.append(paint(_ACCESS_COLORS[change.action], f"  {_ACCESS_SIGNS[change.action]} {change.describe()}"))
        if change.span is not None:
            out.append(f"      at {change.span}")
    return out


def _access_dict(change: Any) -> dict[str, Any]:
    return {"action": change.action, "caller": change.caller, "callee": change.callee, "identity": change.identity,
            "oldMode": change.old_mode, "newMode": change.new_mode, "position": _span_dict(change.span)}


def _access_markdown(diff: MeshDiff) -> list[str]:
    if not diff.access_changes:
        return []
    lines = ["", f"**Access changes** ({_access_counts(diff)}):", "", "| | Who | Change | Where |", "|---|---|---|---|"]
    for change in diff.access_changes:
        if change.action == "mode":
            who, what = f"`{change.callee}`", f"mtls `{change.old_mode}` → `{change.new_mode}`"
        else:
            verb = "may now call" if change.action == "granted" else "may no longer call"
            who, what = f"`{_md_code(change.caller or '')}`", f"{verb} `{change.callee}`"
        where = f"`{change.span}`" if change.span else ""
        lines.append(f"| {_ACCESS_SIGNS[change.action]} | {who} | {what} | {where} |")
    return _capped(lines, 5)
