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

The file also holds each model's field aliases, as pydantic made them: with those, a process that
finds the file before it imports the models (`meshc validate`, `meshc build`: load_light) declares
them without pydantic (meshc.validate.light). The key is therefore computed from files alone,
without importing the models or pydantic.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

import meshc
from meshc.cache import cache_directory, keep_newest, trusted, write_atomic
from meshc.validate import light

if TYPE_CHECKING:
    from pydantic import BaseModel

# pickle.load is _pickle's: taken from there, pickle.py (its pure-Python pickler and unpickler,
# for a cache write only) is not executed at every start.
try:
    from _pickle import load as unpickle
except ImportError:     # an interpreter without the accelerator
    from pickle import load as unpickle

try:    # hashlib's own BLAKE2, without hashlib: it loads OpenSSL (_hashlib) when imported
    from _blake2 import blake2b
except ImportError:     # an interpreter without it: hashlib's, whichever it has
    from hashlib import blake2b

_PREFIX = "validator-"
_SUFFIX = ".pickle"
# A bump forces every cache to be regenerated when the file's layout changes.
_FORMAT = "2"
KEPT = 8
# A meshc module named by an import statement at the start of a line (indented too: imports inside
# functions), in a source read as bytes with a newline put before it: a pattern that starts with a
# literal is searched for as one (`^` in MULTILINE mode is tried at every character).
_MESHC_IMPORT = re.compile(rb"\n[ \t]*(?:from|import)[ \t]+(meshc(?:\.\w+)*)")
MODELS = "meshc.validate.models"
ROOT_MODEL = "Mesh"


def install(model: type[BaseModel]) -> None:
    """Give model (declared with `defer_build`) its compiled validator: from the cache when it holds
    one for these sources, else built by pydantic and cached. Does nothing to a model that has one
    (a light model always has: load_light installed it)."""
    if model.__pydantic_complete__ or type(model.__pydantic_validator__) is light.SchemaValidator:
        return
    path = validator_path(model.__module__, model.__qualname__)
    validator = _load(path, model)
    if validator is not None:
        model.__pydantic_validator__ = validator
        return
    model.model_rebuild()   # generate the schema as pydantic does, then keep it for the next run
    _store(path, model)


def load_light() -> bool:
    """Before anything imports the models: when the cache holds the compiled validator of these
    sources, declare the models light (meshc.validate.light) and install Mesh's validator. False,
    the models not imported, when there is no such file or it cannot be used: they are then
    declared with pydantic when imported, and install() writes the file again."""
    if MODELS in sys.modules:
        return False
    try:
        with open(validator_path(MODELS, ROOT_MODEL), "rb") as file:
            if not trusted(os.fstat(file.fileno())):
                return False
            light.activate(_read_aliases(file))
            schema, config = unpickle(file)      # imports the models, light
        validator = light.SchemaValidator(schema, config)
        models = sys.modules[MODELS]
        if set(_model_names(models)) != set(light.aliases()):
            raise LookupError("the file's aliases are not of these models")
        getattr(models, ROOT_MODEL).__pydantic_validator__ = validator
        return True
    except Exception:  # noqa: BLE001 - missing, damaged, of another build: the models stay pydantic's
        light.deactivate()
        sys.modules.pop(MODELS, None)
        return False


def validator_path(module_name: str, qualname: str) -> str:
    return os.path.join(cache_directory(), f"{_PREFIX}{cache_key(module_name, qualname)}{_SUFFIX}")


@functools.cache
def cache_key(module_name: str, qualname: str) -> str:
    """A digest of everything the model's core schema is generated from: the sources (read, not
    imported) and the Python, pydantic and pydantic-core versions. Once a process: the models it
    imported are of the sources it first read (load_light, then install on a miss)."""
    digest = blake2b(digest_size=20)
    for part in (_FORMAT, sys.version, light.core_version(), module_name, qualname):
        digest.update(part.encode() + b"\0")
    with open(pydantic_version_file(), "rb") as file:
        digest.update(file.name.encode() + b"\0" + file.read() + b"\0")
    for source, text in sorted(_schema_texts(module_name).items()):
        digest.update(source.encode() + b"\0" + text + b"\0")
    return digest.hexdigest()


def pydantic_version_file() -> str:
    """pydantic's `version.py` (its VERSION), found without importing pydantic."""
    spec = importlib.util.find_spec("pydantic")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("pydantic")
    return os.path.join(os.path.dirname(spec.origin), "version.py")


def schema_sources(module_name: str) -> list[str]:
    """The files of module_name and of every meshc module it imports, directly or not."""
    return sorted(_schema_texts(module_name))


def _schema_texts(module_name: str) -> dict[str, bytes]:
    """schema_sources() with the content of each file, each read once."""
    texts: dict[str, bytes] = {}
    seen: set[str] = set()
    pending = [module_name]
    while pending:
        name = pending.pop()
        path = _source_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        with open(path, "rb") as file:
            texts[path] = file.read()
        pending += [found.decode() for found in _MESHC_IMPORT.findall(b"\n" + texts[path])]
    return texts


def _source_file(module_name: str) -> str | None:
    """The file of a module, found without importing it: a meshc module's in meshc's package
    directory, another's by the import system (which imports its parent packages only)."""
    if module_name != "meshc" and not module_name.startswith("meshc."):
        spec = importlib.util.find_spec(module_name)
        return spec.origin if spec is not None and spec.has_location else None
    base = os.path.join(os.path.dirname(meshc.__file__), *module_name.split(".")[1:])
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _read_aliases(file: BinaryIO) -> dict[str, dict[str, str]]:
    aliases = unpickle(file)    # plain strings only: names no class, imports nothing
    if not isinstance(aliases, dict):
        raise TypeError("no alias table")
    return aliases


def _load(path: str, model: type[BaseModel]) -> light.SchemaValidator | None:
    try:
        with open(path, "rb") as file:
            if not trusted(os.fstat(file.fileno())):   # unpickling runs code the file names
                return None
            if _read_aliases(file) != field_aliases(sys.modules[model.__module__]):
                return None         # what light models would read must be pydantic's aliases
            schema, config = unpickle(file)
        return light.SchemaValidator(schema, config)
    except Exception:  # noqa: BLE001 - missing, truncated, from another build: generate it again
        return None


def _store(path: str, model: type[BaseModel]) -> None:
    """Write the models' aliases, then the model's core schema and config, atomically; forget the
    oldest files."""
    import pickle

    try:
        aliases = pickle.dumps(field_aliases(sys.modules[model.__module__]), protocol=pickle.HIGHEST_PROTOCOL)
        data = pickle.dumps((without_metadata(model.__pydantic_core_schema__), _core_config(model)),
                            protocol=pickle.HIGHEST_PROTOCOL)
        write_atomic(path, aliases + data)
        # several meshc versions (checkouts, a pinned pre-commit hook) may share the directory,
        # and must not evict each other at every run
        keep_newest(os.path.dirname(path), f"{_PREFIX}*{_SUFFIX}", KEPT)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        # A read-only home, a full disk: validation goes on, the next run generates it again.
        return


def field_aliases(module: Any) -> dict[str, dict[str, str]]:
    """Every model class of the spec's models module (declared with pydantic or light): its fields'
    names in the spec (`spec_names`), by field, in declaration order."""
    return {name: module.spec_names(cls) for name, cls in _model_names(module).items()}


def _model_names(module: Any) -> dict[str, Any]:
    """The model classes of the spec's models module, by `module.qualname`."""
    base = module.BaseModel
    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, base) and cls.__module__ == module.__name__}


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
