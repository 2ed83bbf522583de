"""Importing only the parts of a client library a verb uses, without changing what the rest of
the process sees.

Two tools, each leaving every module importable as usual for any other code in the process:

- `package_without_init`: a package whose `__init__` imports every submodule (the `kubernetes`
  package imports its kubeconfig loader, websocket streams, leader election and informers) is
  registered without running it; submodules are imported on their own, and the first time
  anything asks the package for a name it lacks, its `__init__` runs after all.
- `hidden`: a module a library imports if it can (`kubernetes_validate`) fails to import while
  the library loads, and is importable again afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

_VERSION = re.compile(rb"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
_completing = threading.RLock()
_pending: set[str] = set()     # packages registered without their `__init__`, which has not run yet


def package_without_init(name: str, *, submodules: Collection[str] = (), version: bool = False) -> bool:
    """Register the package `name` without running its `__init__`: importing `name.sub` then
    runs only `sub` (and what it imports). Any other name the package is asked for runs that
    `__init__`, once (PEP 562's module `__getattr__`), so `import name; name.anything` keeps
    working, except the `submodules`: names the `__init__` binds to its submodules of the same
    name (`from . import sub`), which `from name import sub` (the library's own modules do it)
    imports alone, as the import system would. `version`: copy `__version__` from the source
    first (submodules read it). False when the package is imported already or cannot be
    deferred (not found, not a source package, no `__version__` line): import it normally then."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    loader = spec.loader if spec is not None else None
    if spec is None or loader is None or spec.submodule_search_locations is None or spec.origin is None:
        return False
    values: dict[str, Any] = {}
    if version:
        try:
            with open(spec.origin, "rb") as source:
                found = _VERSION.search(source.read())
        except OSError:
            return False
        if found is None:
            return False
        values["__version__"] = found.group(1).decode()
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(values)
    module.__getattr__ = _completion(module, frozenset(submodules))  # type: ignore[method-assign]
    _pending.add(name)
    sys.modules[name] = module
    if "." in name:     # as the import system does: the parent package names its submodule
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, module)
    return True


def _completion(module: ModuleType, submodules: frozenset[str]) -> Any:
    """The module `__getattr__` of a package registered without its `__init__`: runs it once."""

    def __getattr__(attribute: str) -> Any:
        # `from package import sub` asks the package for `sub` before importing it
        if attribute in submodules:
            return importlib.import_module(f"{module.__name__}.{attribute}")
        with _completing:
            if module.__name__ not in _pending:
                raise AttributeError(f"module {module.__name__!r} has no attribute {attribute!r}")
            # While `__init__` runs, its `from . import sub` asks for names not set yet: those
            # are submodules for the import system to load, not a reason to run `__init__` again.
            _pending.discard(module.__name__)
            spec = module.__spec__
            assert spec is not None and spec.loader is not None
            spec.loader.exec_module(module)
        return getattr(module, attribute)

    return __getattr__


def is_deferred(name: str) -> bool:
    """Whether the package `name` was registered without its `__init__`, which has not run yet."""
    return name in _pending


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """While inside, importing any of `names` fails (ImportError), as if not installed; afterwards
    each is importable again. Names imported already are left alone."""
    hide = [name for name in names if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]   # an import of it raises ImportError
    try:
        yield
    finally:
        for name in hide:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def import_all(*names: str) -> None:
    for name in names:
        importlib.import_module(name)
