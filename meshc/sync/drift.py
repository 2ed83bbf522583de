"""Drift: where a live Kubernetes object no longer holds what meshc applied to it.

Only the fields meshc sets are compared (the desired object is a subset of the live one: the
server adds defaults and status, other controllers add annotations), so the check is cheap and
re-applying fixes exactly what it reports. Server-side normalisations are not drift: omitted
zero values (`readOnly: false`), quantities in another spelling (`0.5` vs `500m`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meshc.quantities import parse_quantity

# Metadata the server or other tools own; meshc's labels and annotations are compared.
_COMPARED_METADATA = ("labels", "annotations")
_LIST_KEYS = ("name", "mountPath", "containerPort", "port", "ip")
MAX_REPORTED = 3


def drifted_paths(desired: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Paths (e.g. `spec.replicas`) where live differs from what the desired object sets."""
    found: list[str] = []
    for key, value in desired.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata":
            live_meta = live.get("metadata") or {}
            for part in _COMPARED_METADATA:
                if part in value:
                    _compare(value[part], live_meta.get(part), f"metadata.{part}", found)
            continue
        _compare(value, live.get(key), key, found)
    return found


def describe(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_REPORTED])
    more = f" (+{len(paths) - MAX_REPORTED} more)" if len(paths) > MAX_REPORTED else ""
    return f"drift: {shown}{more}"


def _compare(desired: Any, live: Any, path: str, found: list[str]) -> None:
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            if desired or live is not None:
                found.append(path)
            return
        for key, value in desired.items():
            _compare(value, live.get(key), _join(path, key), found)
    elif isinstance(desired, list):
        _compare_list(desired, live, path, found)
    elif not _same_scalar(desired, live):
        found.append(path)


def _compare_list(desired: list[Any], live: Any, path: str, found: list[str]) -> None:
    if live is None and not desired:
        return
    if not isinstance(live, list):
        found.append(path)
        return
    key = _merge_key(desired)
    if key is None:
        if len(desired) != len(live):
            found.append(path)
            return
        for index, (want, have) in enumerate(zip(desired, live)):
            _compare(want, have, f"{path}[{index}]", found)
        return
    by_key = {item.get(key): item for item in live if isinstance(item, dict)}
    for item in desired:
        _compare(item, by_key.get(item[key]), f"{path}[{item[key]}]", found)


def _merge_key(items: list[Any]) -> str | None:
    """The field that identifies items of a list of objects (containers by name, ports by port)."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in _LIST_KEYS:
        values = [item.get(key) for item in items]
        if all(v is not None for v in values) and len(set(map(str, values))) == len(values):
            return key
    return None


def _same_scalar(desired: Any, live: Any) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if live is None:
        return desired in (None, False, 0, "")   # the server omits zero values of omitempty fields
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    return _quantity(desired) is not None and _quantity(desired) == _quantity(live)


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    try:   # the value the server keeps, rounded and capped as it does (`1e9` is live as `1G`)
        return parse_quantity(value)
    except ValueError:
        return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
