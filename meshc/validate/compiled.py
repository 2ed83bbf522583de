"""The spec's compiled validator, kept on disk so that `meshc validate` need not generate it.

pydantic builds a model's validator by generating its core schema (a tree of dicts naming the
models' classes, enums and validator functions) and compiling it in pydantic-core; for the
spec's 68 models that was a quarter of a short `meshc validate`. The models are declared with
`defer_build`, and the first validation installs Mesh's validator compiled from a core schema
pickled in the user's cache directory: unpickling and compiling it takes a few milliseconds.

The models stay the one source of truth. The cache file is named by a digest of the sources the
schema is generated from (the models module and the meshc modules it imports, transitively) and
of the Python, pydantic and pydantic-core versions: a changed model or an upgraded pydantic finds
no file and generates the schema again, as pydantic always did, then writes the file atomically
(the most recent few are kept: checkouts of other versions may share the directory).
A file that cannot be read, unpickled or compiled is replaced; a directory that cannot be written
costs only the time. `MESHC_CACHE_DIR` moves the cache (default: `$XDG_CACHE_HOME/meshc`, else
`~/.cache/meshc`); a file is read only when it is the user's own and writable by no one else.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pydantic
import pydantic_core
from pydantic import BaseModel
from pydantic_core import SchemaValidator

from meshc.cache import cache_dir, keep_newest, trusted, write_atomic

_PREFIX = "validator-"
_SUFFIX = ".pickle"
# A bump forces every cache to be regenerated when the file's layout changes.
_FORMAT = "1"
KEPT = 8
_MESHC_IMPORT = re.compile(r"^\s*(?:from|import)\s+(meshc(?:\.\w+)*)", re.MULTILINE)


def install(model: type[BaseModel]) -> None:
    """Give model (declared with `defer_build`) its compiled validator: from the cache when it holds
    one for these sources, else built by pydantic and cached. Does nothing to a model that has one."""
    if model.__pydantic_complete__ or type(model.__pydantic_validator__) is SchemaValidator:
        return
    path = cache_dir() / f"{_PREFIX}{cache_key(model)}{_SUFFIX}"
    validator = _load(path)
    if validator is not None:
        model.__pydantic_validator__ = validator
        return
    model.model_rebuild()   # generate the schema as pydantic does, then keep it for the next run
    _store(path, model)


def cache_key(model: type[BaseModel]) -> str:
    """A digest of everything the model's core schema is generated from."""
    digest = hashlib.sha256()
    for part in (_FORMAT, sys.version, pydantic.VERSION, pydantic_core.__version__, model.__module__,
                 model.__qualname__):
        digest.update(part.encode() + b"\0")
    for source in schema_sources(model.__module__):
        digest.update(source.encode() + b"\0" + Path(source).read_bytes() + b"\0")
    return digest.hexdigest()[:40]


def schema_sources(module_name: str) -> list[str]:
    """The files of module_name and of every meshc module it imports, directly or not."""
    seen: dict[str, str] = {}
    pending = [module_name]
    while pending:
        name = pending.pop()
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if name in seen or path is None:
            continue
        seen[name] = path
        pending += _MESHC_IMPORT.findall(Path(path).read_text(encoding="utf-8"))
    return sorted(seen.values())


def _load(path: Path) -> SchemaValidator | None:
    try:
        with path.open("rb") as file:
            if not trusted(os.fstat(file.fileno())):   # unpickling runs code the file names
                return None
            schema, config = pickle.load(file)
        return SchemaValidator(schema, config)
    except Exception:  # noqa: BLE001 - missing, truncated, from another build: generate it again
        return None


def _store(path: Path, model: type[BaseModel]) -> None:
    """Write the model's core schema and config, atomically, and forget the oldest files."""
    try:
        data = pickle.dumps((without_metadata(model.__pydantic_core_schema__), _core_config(model)),
                            protocol=pickle.HIGHEST_PROTOCOL)
        write_atomic(path, data)
        # several meshc versions (checkouts, a pinned pre-commit hook) may share the directory,
        # and must not evict each other at every run
        keep_newest(path.parent, f"{_PREFIX}*{_SUFFIX}", KEPT)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        # A read-only home, a full disk: validation goes on, the next run generates it again.
        return


def _core_config(model: type[BaseModel]) -> Any:
    from pydantic._internal._config import ConfigWrapper

    return ConfigWrapper(model.model_config).core_config(title=model.__name__)


def without_metadata(node: Any) -> Any:
    """The core schema without its nodes' `metadata` entries: they hold what JSON Schema generation
    needs (pydantic's own closures, which cannot be pickled) and nothing the validator reads. A node
    is a dict whose `type` is a string (a model's `fields` mapping may well hold a field named
    `metadata`); defaults are data, not schema, and are kept whole."""
    if isinstance(node, dict):
        is_node = isinstance(node.get("type"), str)
        return {key: value if is_node and key == "default" else without_metadata(value)
                for key, value in node.items() if not (is_node and key == "metadata")}
    if isinstance(node, list):
        return [without_metadata(item) for item in node]
    if isinstance(node, tuple):
        return tuple(without_metadata(item) for item in node)
    return node
