"""What a change does to the compiled output: Kubernetes objects, etcd keys and Envoy files.

Compares two bundles' files (manifest.json aside: it records the revision and always differs) and
the objects within them, naming each by what an operator knows: `Deployment shop/catalog-v2`,
`/meshc/shop/services/catalog`, `envoy/frontend/cds.yaml` with the clusters inside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from meshc import render
from meshc.emit import naming

MAX_DETAILS = 8
TARGET_ORDER = {"kubernetes": 0, "etcd": 1, "envoy": 2, "file": 3}
# Hashes that change whenever anything else in the object changes: listing them adds nothing.
_DERIVED_FIELDS = (naming.CONFIG_HASH_ANNOTATION, naming.BOOTSTRAP_HASH_ANNOTATION, "configHash")


@dataclass(frozen=True, slots=True)
class OutputChange:
    target: str                   # kubernetes | etcd | envoy | file
    action: str                   # added | changed | removed
    name: str                     # "Deployment shop/catalog-v2", an etcd key, a file path
    file: str                     # the bundle file it lives in
    details: tuple[str, ...] = ()  # what changed inside: field paths, clusters, listeners

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (TARGET_ORDER[self.target], self.file, self.name)


def compare_bundles(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> list[OutputChange]:
    changes: list[OutputChange] = []
    changes += _kubernetes(old, new)
    changes += _etcd(old, new)
    changes += _envoy(old, new)
    changes += _other_files(old, new)
    return sorted(changes, key=lambda c: c.sort_key)


def _action(before: object, after: object) -> str | None:
    if before is None and after is not None:
        return "added"
    if after is None and before is not None:
        return "removed"
    return "changed" if before != after else None


# --- Kubernetes ---------------------------------------------------------------------------

def _is_kubernetes_object_file(path: str) -> bool:
    return path.startswith("kubernetes/") and path != naming.KUSTOMIZATION_PATH


def _kubernetes(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> Iterator[OutputChange]:
    # A file with the same bytes on both sides holds the same objects: only the others are parsed
    # (one service's change touches one file of thousands). Object names are unique in a bundle,
    # so an object cannot be in an unchanged file on one side and elsewhere on the other.
    changed = [p for p in set(old) | set(new) if _is_kubernetes_object_file(p) and old.get(p) != new.get(p)]
    before = _objects({p: old[p] for p in changed if p in old})
    after = _objects({p: new[p] for p in changed if p in new})
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        action = _action(was and was[1], now and now[1])
        if action is None:
            continue
        kind, namespace, name = key
        file = (now or was or ("", None))[0]
        label = f"{kind} {namespace + '/' if namespace else ''}{name}"
        details = _field_paths(was[1], now[1]) if was and now else ()
        yield OutputChange("kubernetes", action, label, file, details)


def _objects(files: Mapping[str, bytes]) -> dict[tuple[str, str, str], tuple[str, Any]]:
    objects: dict[tuple[str, str, str], tuple[str, Any]] = {}
    for path in sorted(p for p in files if _is_kubernetes_object_file(p)):
        for doc in _documents(files[path]):
            if isinstance(doc, dict):
                meta = doc.get("metadata") or {}
                key = (str(doc.get("kind", "?")), str(meta.get("namespace") or ""), str(meta.get("name", "?")))
                objects[key] = (path, doc)
    return objects


def _documents(data: bytes) -> list[Any]:
    """Every file meshc writes is JSON documents joined by `---` (meshc.render): parse them as JSON,
    ~20x faster than YAML on a large mesh; anything else falls back to the YAML parser."""
    try:
        return [orjson.loads(part) for part in data.split(render.DOCUMENT_SEPARATOR) if part.strip()]
    except orjson.JSONDecodeError:
        return _yaml_documents(data)


def _yaml_documents(data: bytes) -> list[Any]:
    import yaml

    try:
        loader: Any = yaml.CSafeLoader
    except AttributeError:  # pragma: no cover - PyYAML without libyaml
        loader = yaml.SafeLoader
    return [doc for doc in yaml.load_all(data, Loader=loader) if doc is not None]


# --- etcd ---------------------------------------------------------------------------------

def _etcd(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> Iterator[OutputChange]:
    before, after = _seed(old), _seed(new)
    for key in sorted(set(before) | set(after)):
        action = _action(before.get(key), after.get(key))
        if action is None:
            continue
        details = _field_paths(_json_or_text(before[key]), _json_or_text(after[key])) if action == "changed" else ()
        yield OutputChange("etcd", action, key, naming.ETCD_SEED_PATH, details)


def _seed(files: Mapping[str, bytes]) -> dict[str, str]:
    data = files.get(naming.ETCD_SEED_PATH)
    if data is None:
        return {}
    kvs = orjson.loads(data).get("kvs") or {}
    return {str(k): str(v) for k, v in kvs.items()}


def _json_or_text(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


# --- Envoy --------------------------------------------------------------------------------

def _envoy(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> Iterator[OutputChange]:
    paths = sorted(p for p in set(old) | set(new) if p.startswith("envoy/"))
    for path in paths:
        action = _action(old.get(path), new.get(path))
        if action is None:
            continue
        details: tuple[str, ...] = ()
        if action == "changed":
            details = tuple(_resource_changes(_documents(old[path]), _documents(new[path])))
            if path.endswith("/bootstrap.yaml") or path.endswith("/bootstrap.json"):
                details += ("the bootstrap changed: the sidecars restart (the pods roll)",)
        yield OutputChange("envoy", action, path, path, details[:MAX_DETAILS])


def _resource_changes(old_docs: list[Any], new_docs: list[Any]) -> Iterator[str]:
    """Clusters and listeners (xDS `resources` by name) added, changed or removed within a file."""
    before, after = _resources(old_docs), _resources(new_docs)
    if not before and not after:
        yield from _field_paths(old_docs, new_docs)
        return
    for key in sorted(set(before) | set(after)):
        action = _action(before.get(key), after.get(key))
        if action is not None:
            kind, name = key
            yield f"{kind} {name} {action}"


def _resources(docs: list[Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for doc in docs:
        resources = doc.get("resources") if isinstance(doc, dict) else None
        for resource in resources if isinstance(resources, list) else []:
            if isinstance(resource, dict) and "name" in resource:
                kind = str(resource.get("@type", "resource")).rsplit(".", 1)[-1].lower()
                found[(kind, str(resource["name"]))] = resource
    return found


# --- anything else ------------------------------------------------------------------------

def _other_files(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> Iterator[OutputChange]:
    covered = {naming.MANIFEST_PATH, naming.ETCD_SEED_PATH}
    for path in sorted(set(old) | set(new)):
        if path in covered or path.startswith("envoy/") or _is_kubernetes_object_file(path):
            continue
        action = _action(old.get(path), new.get(path))
        if action is not None:
            yield OutputChange("file", action, path, path)


# --- field paths --------------------------------------------------------------------------

def _field_paths(old: Any, new: Any) -> tuple[str, ...]:
    paths = list(_differences(old, new, ""))
    if len(paths) > MAX_DETAILS:
        paths = paths[:MAX_DETAILS - 1] + [f"... and {len(paths) - MAX_DETAILS + 1} more fields"]
    return tuple(paths)


def _differences(old: Any, new: Any, path: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key in _DERIVED_FIELDS:
                continue
            yield from _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
    elif isinstance(old, list) and isinstance(new, list) and _named(old) and _named(new):
        before = {item["name"]: item for item in old}
        after = {item["name"]: item for item in new}
        for name in sorted(set(before) | set(after)):
            yield from _differences(before.get(name), after.get(name), f"{path}[{name}]")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (was, now) in enumerate(zip(old, new)):
            yield from _differences(was, now, f"{path}[{index}]")
    elif old != new:
        yield path or "(the whole value)"


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items) and \
        len({item["name"] for item in items}) == len(items)
