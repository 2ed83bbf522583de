"""Structure, types and ranges: run the pydantic models and turn their errors into diagnostics."""

from __future__ import annotations

import re
import types
import typing
from collections import Counter
from dataclasses import replace
from typing import Any

from meshc.diagnostics import MAX_LISTED_PER_CODE, Diagnostic, Path, error, listed_per_code
from meshc.load import Positions
from meshc.validate import compiled
from meshc.validate.light import ValidationError
from meshc.validate.models import API_VERSION, KIND, UNION_TAGS, Mesh, Model, spec_names

_TYPE_WORDS = {
    "int": "an integer", "string": "a string", "bool": "true or false", "float": "a number",
    "list": "a list", "dict": "a mapping", "model": "a mapping", "model_attributes": "a mapping",
}
_RANGE_TYPES = frozenset({
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
    "string_too_short", "string_too_long", "duration_range", "percent_range",
})


def check_structure(data: Any, positions: Positions) -> tuple[Mesh | None, list[Diagnostic]]:
    """The validated model, or None and one diagnostic per structural problem."""
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"the scalar {data!r}"
        msg = f"the document must be a mapping with apiVersion, kind, metadata and spec, not {what}"
        return None, [error("E007", msg, positions.value(()))]
    compiled.install(Mesh)
    try:
        return Mesh.model_validate(data), []
    except ValidationError as exc:
        return None, _diagnostics(exc.errors(include_url=False), data, positions)


def _diagnostics(errors: list[Any], data: Any, positions: Positions) -> list[Diagnostic]:
    """One diagnostic per error, up to MAX_LISTED_PER_CODE of each kind; the rest of a kind are
    counted into one (a file of a million unknown keys costs a million cheap counts, not a million
    "did you mean" searches)."""
    listed: Counter[str] = Counter()
    left_out: dict[str, tuple[Any, int]] = {}
    diagnostics = []
    for err in errors:
        kind = err["type"]
        if listed[kind] < MAX_LISTED_PER_CODE:
            listed[kind] += 1
            diagnostics.append(_diagnostic(err, data, positions))
        else:
            first, count = left_out.get(kind, (err, 0))
            left_out[kind] = (first, count + 1)
    for first, count in left_out.values():
        diagnostics.append(replace(_diagnostic(first, data, positions), count=count))
    return listed_per_code(diagnostics)


def dotted(path: Path) -> str:
    """`spec.services[0].port` for a data path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _diagnostic(err: Any, data: Any, positions: Positions) -> Diagnostic:
    kind: str = err["type"]
    loc = tuple(err["loc"])
    is_dict_key = bool(loc) and loc[-1] == "[key]"
    path: Path = tuple(p for p in loc if p != "[key]" and p not in UNION_TAGS)
    where = dotted(path)
    value_span = positions.key(path) if is_dict_key else positions.value(path)
    if kind == "extra_forbidden":
        name = str(path[-1])
        hint = _did_you_mean(name, path[:-1])
        msg = f"unknown field '{name}' in {dotted(path[:-1]) or 'the document'}"
        return error("E101", msg + (f"; did you mean '{hint}'?" if hint else ""), positions.key(path), path, hint)
    if kind == "missing":
        parent = dotted(path[:-1]) or "the document"
        return error("E102", f"missing required field '{path[-1]}' in {parent}", positions.value(path[:-1]), path)
    if kind == "literal_error" and path == ("apiVersion",):
        return error("E107", f"apiVersion must be {API_VERSION}, not {err['input']!r}", value_span, path)
    if kind == "literal_error" and path == ("kind",):
        return error("E108", f"kind must be {KIND}, not {err['input']!r}", value_span, path)
    if kind in ("literal_error", "enum"):
        hint = _closest_choice(err)
        suffix = f"; did you mean '{hint}'?" if hint else ""
        return error("E106", f"{where}: {_choices(err)}{suffix}", value_span, path, hint)
    if kind == "dns_label":
        return error("E109", f"{where}: {err['msg']}", value_span, path)
    if kind == "duration":
        return error("E105", f"{where}: {err['msg']}", value_span, path)
    if kind == "address":
        return error("E112", f"{where}: {err['msg']}", value_span, path)
    if kind == "string_pattern_mismatch":
        return error("E110", f"{where}: {_show(err.get('input'))} {_pattern_hint(path)}", value_span, path)
    if kind in _RANGE_TYPES:
        hint = _RANGE_HINTS.get(str(path[-1])) if err.get("input") == 0 and path else None
        return error("E104", f"{where}: {_range_message(err)}", value_span, path, hint)
    base = kind.split("_")[0] if kind.endswith(("_type", "_parsing")) else None
    if base is not None or kind in ("int_from_float", "model_attributes_type"):
        wanted = _TYPE_WORDS.get(base or "int", "another type")
        return error("E103", f"{where}: expected {wanted}, got {_show(err.get('input'))}", value_span, path)
    return error("E110", f"{where}: {err['msg']}", value_span, path)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


# models._URL_PATH_PATTERN: a path match's prefix or exact path, and a rewrite's prefix.
_URL_PATH_HINT = ("must start with '/' and hold printable ASCII only, no spaces, '?' or '#' (percent-encode other "
                  "characters)")
_PATTERN_HINTS = {
    "path": "must start with '/' and hold printable ASCII only, no spaces (percent-encode other characters)",
    "prefix": _URL_PATH_HINT,
    "exact": _URL_PATH_HINT,
    "image": "must be an image reference without spaces",
    "address": "must be an IP address or a DNS name",
    "header": "must be an HTTP header name",
    "topologyKey": "must be a label key such as topology.kubernetes.io/zone",
    "matchLabelKeys": "must be a label key such as app.kubernetes.io/version",
    "mismatchLabelKeys": "must be a label key such as app.kubernetes.io/version",
    "namespaces": "must be a namespace name (a DNS-1123 label)",
}


def _pattern_hint(path: Path) -> str:
    field = next((p for p in reversed(path) if isinstance(p, str)), "")
    if field == "code" and "ignore" in path:
        return "is not a warning code such as W302: only warnings can be ignored"
    if len(path) >= 2 and path[-2] == "env":
        return "is not a valid environment variable name"
    return _PATTERN_HINTS.get(field, "does not have the expected form")


# Why 0 is refused where a neighbouring field accepts it.
_RANGE_HINTS = {
    "maxConnections": "Envoy would open no connection at all, and every request would fail with 503; "
                      "maxPendingRequests: 0 (no queue) is the setting that fails fast",
    "maxRequests": "Envoy would let no request through, and every request would fail with 503; "
                   "maxPendingRequests: 0 (no queue) is the setting that fails fast",
}


def _closest_choice(err: Any) -> str | None:
    """`tcp` for `TCP`, `round_robin` for `round-robin`: the allowed value the input was meant to be."""
    value = err.get("input")
    if not isinstance(value, str):
        return None
    allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    folded = {choice.lower().replace("-", "_"): choice for choice in allowed}
    if value.lower().replace("-", "_") in folded:
        return str(folded[value.lower().replace("-", "_")])
    import difflib   # only a misspelt name needs it: not imported by every validate

    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _choices(err: Any) -> str:
    expected = err.get("ctx", {}).get("expected", "")
    return f"{err['input']!r} is not allowed; expected {expected}"


def _range_message(err: Any) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind in ("duration_range", "percent_range"):
        return str(err["msg"])
    if kind in ("too_short", "too_long"):
        return f"must have at {'least' if kind == 'too_short' else 'most'} {ctx.get('min_length', ctx.get('max_length'))} item(s)"
    if kind in ("string_too_short", "string_too_long"):
        return str(err["msg"]).lower()
    bound = next(iter(ctx.values()), "?")
    words = {"greater_than": "greater than", "greater_than_equal": "at least",
             "less_than": "less than", "less_than_equal": "at most"}
    return f"{value!r} is out of range: must be {words[kind]} {bound}"


def _did_you_mean(name: str, parent: Path) -> str | None:
    model = _model_at(parent)
    if model is None:
        return None
    fields = list(spec_names(model).values())
    import difflib   # only a misspelt name needs it: not imported by every validate

    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    if not close:
        lowered = {f.lower(): f for f in fields}
        return lowered.get(name.lower().replace("_", "").replace("-", "")) or _one_level_down(name, model)
    return close[0]


def _one_level_down(name: str, model: type[Model]) -> str | None:
    """`match.host` for a `host` written beside `match` instead of inside it: the one field of
    this mapping whose own mapping has a field of that name."""
    found = []
    for field, annotation in _field_types(model).items():
        inner = _unwrap(annotation)
        if isinstance(inner, type) and issubclass(inner, Model) and name in _field_types(inner):
            found.append(f"{field}.{name}")
    return found[0] if len(found) == 1 else None


def _field_types(model: type[Model]) -> dict[str, Any]:
    """A model's fields by their name in the spec (alias) with their types, including those
    declared before their class is (which pydantic keeps as forward references until a rebuild:
    the validator comes from meshc.validate.compiled, so there is none)."""
    try:
        hints = typing.get_type_hints(model)
    except (NameError, TypeError):
        hints = {}
    return {alias: hints.get(name, model.model_fields[name].annotation) for name, alias in spec_names(model).items()}


def _model_at(path: Path) -> type[Model] | None:
    """The model class that describes the mapping at path (for spelling hints)."""
    current: Any = Mesh
    for part in path:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, Model)):
            return None
        types = _field_types(current)
        if part not in types:
            return None
        current = types[part]
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, Model) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional, list[...] and Annotated to reach the model class, if there is one."""
    for _ in range(6):
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = models[-1]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            break
    return annotation
