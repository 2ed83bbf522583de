"""Field ownership: server-side apply merging, pruning and conflicts, and `managedFields` bookkeeping.

Follows structured-merge-diff as the API server uses it: an applier owns the leaves of its
configuration; a change to a field another manager owns is a conflict for an applier (unless forced)
and a transfer of ownership for an updater; a field an applier stops applying is removed when no
other applier owns it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from typing import Any

from tests.k8sapi.fieldsets import (
    ATOMIC_MAPS,
    SET_LISTS,
    FieldSet,
    Path,
    applied_fields,
    changed_fields,
    describe,
    field_name,
    from_fields_v1,
    key_element,
    list_keys,
    remove_path,
    to_fields_v1,
    tracked_view,
)

Change = tuple[FieldSet, FieldSet, FieldSet]


@dataclass(frozen=True)
class ManagerEntry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    fields: FieldSet

    @property
    def key(self) -> tuple[str, str]:
        return (self.manager, self.operation)

    @property
    def label(self) -> str:
        """How conflict messages name the manager."""
        name = json.dumps(self.manager)
        return f"{name} using {self.api_version}" if self.operation == "Update" else name


Managers = dict[tuple[str, str], ManagerEntry]


class FieldConflicts(Exception):
    def __init__(self, conflicts: list[tuple[ManagerEntry, Path]]) -> None:
        super().__init__(self.message_for(conflicts))
        self.conflicts = conflicts

    @staticmethod
    def message_for(conflicts: list[tuple[ManagerEntry, Path]]) -> str:
        if len(conflicts) == 1:
            entry, path = conflicts[0]
            return f"Apply failed with 1 conflict: conflict with {entry.label}: {describe(path)}"
        lines: list[str] = []
        for label in sorted({entry.label for entry, _ in conflicts}):
            lines.append(f"conflicts with {label}:")
            lines += [f"- {describe(path)}" for entry, path in conflicts if entry.label == label]
        return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict[str, str]]:
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {entry.label}", "field": describe(path)}
                for entry, path in self.conflicts]


def decode(entries: list[dict[str, Any]] | None) -> Managers:
    managers: Managers = {}
    for raw in entries or []:
        time = str(raw.get("time") or "").replace("+00:00", "Z")  # typed clients send isoformat times
        entry = ManagerEntry(raw.get("manager", ""), raw.get("operation", "Update"), raw.get("apiVersion", ""),
                             time, from_fields_v1(raw.get("fieldsV1") or {}))
        managers[entry.key] = entry
    return managers


def encode(managers: Managers) -> list[dict[str, Any]]:
    ordered = sorted(managers.values(), key=lambda e: (e.operation, e.time, e.manager))
    return [{"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
             "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(e.fields)} for e in ordered]


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value]
    return value


def merge(live: Any, config: Any, path: Path = ()) -> Any:
    """Merge an applied configuration into the live object: maps and keyed lists merge, the rest is replaced."""
    if isinstance(live, dict) and isinstance(config, dict) and path not in ATOMIC_MAPS:
        merged = dict(live)
        for key, value in config.items():
            merged[key] = merge(live[key], value, path + (f"f:{key}",)) if key in live else copy.deepcopy(value)
        return merged
    if isinstance(live, list) and isinstance(config, list):
        if field_name(path) in SET_LISTS:
            return live + [item for item in config if item not in live]
        keys = list_keys(field_name(path), live + config)
        if keys:
            return _merge_items(live, config, keys, path)
    return copy.deepcopy(config)


def _merge_items(live: list[Any], config: list[Any], keys: tuple[str, ...], path: Path) -> list[Any]:
    applied = {key_element(item, keys): item for item in config}
    merged = []
    for item in live:
        element = key_element(item, keys)
        merged.append(merge(item, applied.pop(element), path + (element,)) if element in applied else item)
    return merged + [copy.deepcopy(item) for item in applied.values()]


def apply(live: dict[str, Any], config: dict[str, Any], managers: Managers, manager: str,
          api_version: str) -> tuple[dict[str, Any], Managers]:
    """Merge `config` into `live` and prune what `manager` stopped applying; ownership is resolved later."""
    view = tracked_view(drop_nulls(config))
    merged = merge(live, view)
    previous = managers.get((manager, "Apply"))
    updated = dict(managers)
    updated[(manager, "Apply")] = ManagerEntry(manager, "Apply", api_version, previous.time if previous else "",
                                               applied_fields(view))
    if previous is not None:
        _prune(merged, previous.fields, updated)
    return merged, updated


def _prune(merged: dict[str, Any], last_applied: FieldSet, managers: Managers) -> None:
    owned = frozenset().union(*(e.fields for e in managers.values() if e.operation == "Apply"))
    for path in sorted(last_applied - owned, key=len):
        if not _names_item_key(path) and not any(other[: len(path)] == path for other in owned):
            remove_path(merged, path, owned)


def _names_item_key(path: Path) -> bool:
    """A key field of a list item goes with its item, never on its own."""
    return len(path) >= 2 and path[-2].startswith("k:") and path[-1][2:] in json.loads(path[-2][2:])


def resolve(live: dict[str, Any], new: dict[str, Any], managers: Managers, actor: tuple[str, str],
            force: bool) -> tuple[Managers, Change]:
    """Take changed fields away from the other managers; an unforced change of an owned field is a conflict."""
    change = changed_fields(tracked_view(live), tracked_view(new))
    added, modified, removed = change
    touched = added | modified
    conflicts = [(entry, path) for key, entry in managers.items() if key != actor
                 for path in sorted(entry.fields & touched)]
    if conflicts and not force:
        raise FieldConflicts(conflicts)
    resolved: Managers = {}
    for key, entry in managers.items():
        fields = entry.fields if key == actor else entry.fields - touched - removed
        if fields:
            resolved[key] = replace(entry, fields=fields)
    return resolved, change


def record_update(live: dict[str, Any], new: dict[str, Any], managers: Managers, manager: str,
                  api_version: str) -> Managers:
    """Ownership after a create, update or non-apply patch: the updater owns what it changed."""
    actor = (manager, "Update")
    resolved, (added, modified, removed) = resolve(live, new, managers, actor, force=True)
    previous = resolved.pop(actor, None)
    fields = ((previous.fields if previous else frozenset()) | added | modified) - removed
    if fields:
        resolved[actor] = ManagerEntry(manager, "Update", api_version, previous.time if previous else "", fields)
    return resolved
