"""Field paths and sets in the server's `FieldsV1` format (`f:`, `k:`, `v:` elements).

Without the OpenAPI schema, list and map semantics come from the small tables below, which cover
the fields of the resources this double serves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

Path = tuple[str, ...]
FieldSet = frozenset[Path]

# list field -> the fields that key its items (`+listType=map`)
ASSOCIATIVE_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
SET_LISTS = frozenset({"finalizers"})
KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}
ATOMIC_MAPS: frozenset[Path] = frozenset({("f:spec", "f:selector")})
# struct fields that always exist, so they are never "added" as a whole
ALWAYS_PRESENT = frozenset({"f:metadata", "f:spec", "f:template", "f:containers", "f:strategy"})
# fields no manager owns: identity, system metadata and status
UNTRACKED_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                      "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generateName")


def list_keys(field: str, items: list[Any]) -> tuple[str, ...] | None:
    """The key fields of an associative list, or None for a set or atomic list."""
    if field == "ports" and items and all(isinstance(item, dict) for item in items):
        first = "containerPort" if all("containerPort" in item for item in items) else "port"
        return (first, "protocol")
    return ASSOCIATIVE_LISTS.get(field)


def key_element(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    key = {name: item.get(name, KEY_DEFAULTS.get(name)) for name in keys}
    return "k:" + json.dumps(key, sort_keys=True, separators=(",", ":"))


def value_element(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"))


def field_name(path: Path) -> str:
    return path[-1][2:] if path and path[-1].startswith("f:") else ""


def tracked_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object whose fields managers own."""
    view = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    metadata = {k: v for k, v in view.pop("metadata", {}).items() if k not in UNTRACKED_METADATA}
    if metadata:
        view["metadata"] = metadata
    return view


def nodes(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any, bool]]:
    """Every (path, value, is_leaf) below `value`; list items of set and map lists are their own nodes."""
    if isinstance(value, dict) and value and path not in ATOMIC_MAPS:
        if path:
            yield path, value, False
        for key, child in value.items():
            yield from nodes(child, path + (f"f:{key}",))
    elif isinstance(value, list) and value and (field_name(path) in SET_LISTS or list_keys(field_name(path), value)):
        yield path, value, False
        keys = list_keys(field_name(path), value)
        for item in value:
            if keys is None:
                yield path + (value_element(item),), item, True
            else:
                yield from _item_nodes(item, path + (key_element(item, keys),))
    elif path:
        yield path, value, True


def _item_nodes(item: Any, path: Path) -> Iterator[tuple[Path, Any, bool]]:
    yield path, item, False
    for key, child in (item.items() if isinstance(item, dict) else ()):
        yield from nodes(child, path + (f"f:{key}",))


def is_item(path: Path) -> bool:
    return bool(path) and path[-1][:2] in ("k:", "v:")


def applied_fields(config: dict[str, Any]) -> FieldSet:
    """What an applier owns: the leaves and list items of its configuration."""
    return frozenset(path for path, _, leaf in nodes(config) if leaf or is_item(path))


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldSet, FieldSet, FieldSet]:
    """(added, modified, removed) between two tracked views, intermediate nodes included."""
    before = {path: (value, leaf) for path, value, leaf in nodes(old) if path[-1] not in ALWAYS_PRESENT}
    after = {path: (value, leaf) for path, value, leaf in nodes(new) if path[-1] not in ALWAYS_PRESENT}
    added = frozenset(after.keys() - before.keys())
    removed = frozenset(before.keys() - after.keys())
    modified = frozenset(
        path for path in after.keys() & before.keys()
        if (after[path][1] or before[path][1]) and after[path][0] != before[path][0]
    )
    return added, modified, removed


def to_fields_v1(fields: FieldSet) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}
    return _finish_tree(tree)


def _finish_tree(node: dict[str, Any]) -> dict[str, Any]:
    if set(node) == {"."}:
        return {}
    ordered = sorted(node, key=lambda element: (element != ".", element))
    return {element: _finish_tree(node[element]) for element in ordered}


def from_fields_v1(tree: dict[str, Any], path: Path = ()) -> FieldSet:
    fields: set[Path] = set()
    for element, child in tree.items():
        if element == ".":
            fields.add(path)
        elif not child:
            fields.add(path + (element,))
        else:
            fields |= from_fields_v1(child, path + (element,))
    return frozenset(fields)


def describe(path: Path) -> str:
    """A path as the server prints it in conflict messages, e.g. `.spec.ports[port=80,protocol="TCP"]`."""
    text = ""
    for element in path:
        kind, body = element[:2], element[2:]
        if kind == "f:":
            text += f".{body}"
        elif kind == "k:":
            key = json.loads(body)
            text += "[" + ",".join(f"{name}={json.dumps(key[name])}" for name in sorted(key)) + "]"
        else:
            text += f"[={body}]"
    return text


def _child(container: Any, element: str) -> tuple[Any, Any] | None:
    """(holder, index-or-key) of the child an element names, if it exists."""
    if element.startswith("f:") and isinstance(container, dict) and element[2:] in container:
        return container, element[2:]
    if isinstance(container, list):
        for index, item in enumerate(container):
            if _element_of(item, element) == element:
                return container, index
    return None


def _element_of(item: Any, element: str) -> str:
    if element.startswith("v:"):
        return value_element(item)
    return key_element(item, tuple(json.loads(element[2:]))) if isinstance(item, dict) else ""


def remove_path(obj: dict[str, Any], path: Path, keep: FieldSet) -> None:
    """Remove a field and then the parents it leaves empty, unless someone owns them."""
    trail: list[tuple[Any, Any]] = []
    node: Any = obj
    for element in path:
        found = _child(node, element)
        if found is None:
            return
        trail.append(found)
        node = found[0][found[1]]
    for depth in range(len(trail) - 1, -1, -1):
        holder, index = trail[depth]
        if depth < len(trail) - 1 and (holder[index] or path[: depth + 1] in keep):
            return
        del holder[index]
