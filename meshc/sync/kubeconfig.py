"""What is wrong with a `--kubeconfig` file, in words a person can act on, before the client library
reads it (its own errors about a file that is not a kubeconfig say things like "'str' object does
not support item assignment").

Nothing of the file's content is ever quoted: a kubeconfig holds tokens and keys.
"""

from __future__ import annotations

import os
import stat
from typing import Any

# A kubeconfig is a few KiB (tens with embedded certificates); past this the path is surely wrong,
# and reading it whole (the library does) would cost memory for nothing.
MAX_KUBECONFIG_BYTES = 16 * 1024 * 1024


def kubeconfig_problem(path: str, context: str | None) -> str | None:
    """Why `path` cannot serve as a kubeconfig (with `context`, or its current-context), or None."""
    data = _read(path)
    if data is None or isinstance(data, str):
        return data
    return _shape_problem(data, context)


def _read(path: str) -> bytes | str | None:
    """The file's bytes, what keeps them from being a kubeconfig's, or None for a pipe (not checked)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a kubeconfig file"
    if stat.S_ISFIFO(info.st_mode):
        return None   # `--kubeconfig <(vault ...)`: read once, by the library; reading it here would drain it
    if not stat.S_ISREG(info.st_mode):
        return "is a device or socket, not a kubeconfig file"
    if info.st_size > MAX_KUBECONFIG_BYTES:
        return f"is {info.st_size:,} bytes, far larger than any kubeconfig"
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_KUBECONFIG_BYTES + 1)
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"


def _shape_problem(data: bytes, context: str | None) -> str | None:
    import yaml  # the client library reads kubeconfigs with PyYAML too, so it is loaded anyway

    try:
        config: Any = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))   # a safe loader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"is not a kubeconfig: it is not valid YAML{where}"
    except (yaml.YAMLError, ValueError):
        return "is not a kubeconfig: it is not valid YAML text"
    if not isinstance(config, dict):
        return (f"is not a kubeconfig: it holds {_kind(config)}, not a mapping with clusters, contexts and "
                "users (kind: Config)")
    for section in ("clusters", "contexts"):
        if not _named_entries(config.get(section)):
            return f"is not a usable kubeconfig: it has no {section}"
    contexts = _named_entries(config["contexts"])
    chosen = context or config.get("current-context")
    known = ", ".join(sorted(contexts))
    if not chosen:
        return f"sets no current-context: name one with --context (it has: {known})"
    if chosen not in contexts:
        flag = "--context" if context else "its current-context"
        return f"has no context named {chosen!r} ({flag}; it has: {known})"
    return _context_problem(config, chosen)


def _context_problem(config: dict[str, Any], name: str) -> str | None:
    """What the chosen context points at: a cluster with an http(s) server, a user it has."""
    context = _entry(config["contexts"], name, "context")
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if cluster_name not in _named_entries(config["clusters"]):
        return f"context {name!r} names cluster {cluster_name!r}, which it does not have"
    server = _entry(config["clusters"], cluster_name, "cluster").get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        return f"cluster {cluster_name!r} (context {name!r}) has no server URL (https://HOST:PORT)"
    if user_name is not None and user_name not in _named_entries(config.get("users")):
        return f"context {name!r} names user {user_name!r}, which it does not have"
    return None


def _entry(section: list[Any], name: str, body: str) -> dict[str, Any]:
    """The body (`cluster`, `context`) of the first entry of that name; {} when it has none."""
    for entry in section:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(body)
            return found if isinstance(found, dict) else {}
    return {}


def _named_entries(section: Any) -> set[str]:
    if not isinstance(section, list):
        return set()
    return {entry["name"] for entry in section if isinstance(entry, dict) and isinstance(entry.get("name"), str)}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (an empty document)"
    if isinstance(value, list):
        return "a list"
    return "plain text" if isinstance(value, str) else f"a single {type(value).__name__} value"
