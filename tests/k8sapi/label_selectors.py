"""Label and field selectors of LIST and DELETE-collection requests, with the server's grammar."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, str]], bool]

_KEY = r"[^\s!=<>(),]+"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_COMPARE_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|!=|=|>|<)\s*(?P<value>[^\s!=<>(),]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<negated>!?)\s*(?P<key>{_KEY})\s*$")
FIELD_SELECTABLE = ("metadata.name", "metadata.namespace")


class SelectorError(ValueError):
    pass


def split_requirements(selector: str) -> list[str]:
    """Split on the commas that separate requirements, not those inside `in (a,b)`."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _set_matcher(key: str, op: str, values: set[str]) -> Matcher:
    if op == "in":
        return lambda labels: key in labels and labels[key] in values
    return lambda labels: key not in labels or labels[key] not in values


def _compare_matcher(key: str, op: str, value: str) -> Matcher:
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    try:
        bound = int(value)
    except ValueError:
        message = f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {value}"
        raise SelectorError(message) from None
    if op == ">":
        return lambda labels: key in labels and labels[key].isdigit() and int(labels[key]) > bound
    return lambda labels: key in labels and labels[key].isdigit() and int(labels[key]) < bound


def parse_requirement(text: str) -> Matcher:
    if match := _SET_RE.match(text):
        values = {v.strip() for v in match["values"].split(",") if v.strip()}
        return _set_matcher(match["key"], match["op"], values)
    if match := _COMPARE_RE.match(text):
        return _compare_matcher(match["key"], match["op"], match["value"])
    if match := _EXISTS_RE.match(text):
        key = match["key"]
        if match["negated"]:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: found '{text.strip()}', expected: key, '!key', "
                        "'key=value', 'key!=value', 'key in (...)' or 'key notin (...)'")


def label_matcher(selector: str | None) -> Matcher:
    requirements = [parse_requirement(part) for part in split_requirements(selector or "")]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def field_matcher(selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """Field selectors the server supports for every resource: metadata.name and metadata.namespace."""
    requirements: list[Matcher] = []
    for part in split_requirements(selector or ""):
        match = _COMPARE_RE.match(part)
        if not match or match["op"] in (">", "<"):
            raise SelectorError(f"invalid selector: '{part.strip()}'; can't understand '{part.strip()}'")
        if match["key"] not in FIELD_SELECTABLE:
            raise SelectorError(f'field label not supported: {match["key"]}')
        requirements.append(_compare_matcher(match["key"], match["op"], match["value"]))

    def matches(obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata", {})
        fields = {"metadata.name": metadata.get("name", ""), "metadata.namespace": metadata.get("namespace", "")}
        return all(requirement(fields) for requirement in requirements)

    return matches
