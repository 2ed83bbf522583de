"""meshc's cache directory, and the compiled code of what start-up generates, kept in it.

Python compiles source text at every start of meshc, always the same texts:

- the `dataclass` decorator writes the methods of each class it defines (`__init__`, `__repr__`,
  `__eq__`, `__hash__`, a frozen class's `__setattr__` and `__delattr__`) as source and compiles
  it, one `exec` per method. A `meshc validate` defines over a hundred dataclasses (the IR's 48,
  meshc's own others, pydantic's and annotated_types' internals): a quarter of its CPU time;
- `typing.ForwardRef` compiles each annotation written as a string (pydantic-core's hundreds of
  `TypedDict` fields, among others) when it is made: 750 compiles, another 5%; and
  `collections.namedtuple` makes each class's `__new__` from text.

While `generated_code_cached()` is active, each such text is compiled once, and its code object
kept in a file (marshal) in the cache directory, where the next process finds it (each entry
marshalled on its own, so that a process unmarshals only the code it uses: a validate, about
half of them). It is the code
`compile` gives for that text with the same flags, so the classes and annotations are the ones
Python would have made, methods, signatures and all. The file is named by the interpreter and
its bytecode (marshal's format and code objects are its own), its entries by the full text: a
changed class, a new meshc or another Python finds no entry and compiles as always. A file that
cannot be read is ignored and rewritten; one that anyone but the user could have written is not
read (loading code runs it); a directory that cannot be written costs only the time.

`MESHC_CACHE_DIR` moves the cache (default: `$XDG_CACHE_HOME/meshc`, else `~/.cache/meshc`); the
spec's compiled validator lives there too (meshc.validate.compiled).
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import marshal
import os
import sys
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.util import MAGIC_NUMBER
from types import CodeType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # pathlib (and urllib.parse, which it imports) only where a caller wants a Path
    from pathlib import Path

CACHE_DIR_ENV = "MESHC_CACHE_DIR"
_CODE_PREFIX = "generated-code-"
_CODE_SUFFIX = ".marshal"
# A bump makes every code cache a miss when the file's layout changes.
_FORMAT = "3"
# Entries kept at most: past it, a write keeps only what its own run used (several meshc versions
# sharing the directory each add their own classes' methods).
MAX_ENTRIES = 4096


def cache_dir() -> Path:
    from pathlib import Path

    return Path(cache_directory())


def cache_directory() -> str:
    """cache_dir() as text: what a validate reads its caches with (os.path, not pathlib)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):     # the XDG specification: a relative path is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "meshc")


def trusted(stat: os.stat_result) -> bool:
    """Loading a cache file runs code it holds: read only a file of this user's that no one else
    may have written (what meshc writes is 0600), wherever MESHC_CACHE_DIR points."""
    owner = os.geteuid() if hasattr(os, "geteuid") else stat.st_uid
    return stat.st_uid == owner and not stat.st_mode & 0o022


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write path whole or not at all (readers in other processes never see half a file); the
    directory is made private when it is made. Raises OSError."""
    import tempfile   # only a run that missed the cache writes it

    directory = os.path.dirname(path) or os.curdir
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=directory, prefix=".staging-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staging, path)
    except BaseException:
        os.unlink(staging)
        raise


def keep_newest(directory: str | os.PathLike[str], pattern: str, kept: int) -> None:
    """Remove the files matching `pattern` in `directory` but the `kept` most recently modified
    (several meshc versions may share the directory; another process may remove files meanwhile)."""
    from pathlib import Path   # only after a write

    def modified(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    for stale in sorted(Path(directory).glob(pattern), key=modified, reverse=True)[kept:]:
        stale.unlink(missing_ok=True)


def code_cache_path(directory: str | os.PathLike[str] | None = None) -> Path:
    """The code cache of this interpreter: marshal's format and the bytecode are its own."""
    from pathlib import Path

    return Path(_code_cache_file(directory))


def _code_cache_file(directory: str | os.PathLike[str] | None) -> str:
    tag = f"{_FORMAT}-{sys.implementation.cache_tag}-{MAGIC_NUMBER.hex()}-O{sys.flags.optimize}"
    return os.path.join(cache_directory() if directory is None else directory, f"{_CODE_PREFIX}{tag}{_CODE_SUFFIX}")


class CodeCache:
    """(mode, source text) -> compiled code, read from a file and written back when it missed.
    `codes` holds an entry as the file has it (its code, marshalled) until a process uses it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.codes: dict[str, CodeType | bytes] = _read_codes(path)
        self.used: dict[str, CodeType] = {}
        self.compiled = 0      # texts not found in the file

    def code(self, source: str, mode: str) -> CodeType:
        """What compile(source, "<string>", mode) gives in a module without __future__ imports
        (dataclasses, typing: the flags their exec and compile calls use)."""
        key = f"{mode}\0{source}"
        code = self.codes.get(key)
        if isinstance(code, bytes):     # as the file has it: unmarshalled when first used
            code = _unmarshalled(code)
        if code is None:
            code = compile(source, "<string>", mode, dont_inherit=True)
            self.compiled += 1
        self.codes[key] = self.used[key] = code
        return code

    def exec(self, source: Any, globals: dict[str, Any] | None = None,
             locals: Mapping[str, object] | None = None) -> None:
        """builtins.exec, for dataclasses: a text's code compiled once across processes."""
        builtins.exec(self.code(source, "exec") if isinstance(source, str) else source, globals, locals)

    def eval(self, source: Any, globals: dict[str, Any] | None = None,
             locals: Mapping[str, object] | None = None) -> Any:
        """builtins.eval, for collections.namedtuple (its __new__ is made from text)."""
        return builtins.eval(self.code(source, "eval") if isinstance(source, str) else source, globals, locals)

    def compile(self, source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False,
                optimize: int = -1) -> Any:
        """builtins.compile, for typing.ForwardRef: compile(text, '<string>', 'eval') from the cache,
        any other call as it was."""
        if isinstance(source, str) and filename == "<string>" and mode == "eval" and not flags and optimize == -1:
            return self.code(source, mode)
        return builtins.compile(source, filename, mode, flags, dont_inherit, optimize)

    def save(self) -> None:
        """Write the cache when something was compiled; a failure to write costs only the time."""
        if not self.compiled:
            return
        codes = self.codes if len(self.codes) <= MAX_ENTRIES else self.used
        try:
            data = marshal.dumps({key: code if type(code) is bytes else marshal.dumps(code)
                                  for key, code in codes.items()})
            write_atomic(self.path, data)
        except (OSError, ValueError):
            return


def _read_codes(path: str | os.PathLike[str]) -> dict[str, CodeType | bytes]:
    try:
        with open(path, "rb") as file:
            if not trusted(os.fstat(file.fileno())):
                return {}
            data = marshal.loads(file.read())
    except (OSError, EOFError, ValueError, TypeError):   # missing, truncated, damaged
        return {}
    if not isinstance(data, dict) or not all(type(k) is str and type(v) is bytes for k, v in data.items()):
        return {}
    return data


def _unmarshalled(data: bytes) -> CodeType | None:
    """An entry's code; None when the entry is damaged (it is then compiled again)."""
    try:
        code = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return code if type(code) is CodeType else None


# Where start-up compiles text, by the global name each module calls: a module attribute of that
# name comes before the builtin.
_HOOKS = ((dataclasses, "exec"), (typing, "compile"), (collections, "eval"))


@contextmanager
def generated_code_cached(directory: str | os.PathLike[str] | None = None) -> Iterator[CodeCache | None]:
    """Within: dataclasses' generated methods, typing's forward references and namedtuples'
    `__new__` are compiled through the code cache (yielded; None when something else already
    hooks one of them, which is then left alone)."""
    if any(name in vars(module) for module, name in _HOOKS):
        yield None
        return
    cache = CodeCache(_code_cache_file(directory))
    for module, name in _HOOKS:
        setattr(module, name, getattr(cache, name))
    try:
        yield cache
    finally:
        for module, name in _HOOKS:
            delattr(module, name)
        cache.save()
