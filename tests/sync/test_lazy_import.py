"""meshc.sync.lazy_import: a package registered without its `__init__`, and a hidden module, on
packages written for the test (an `__init__` that notes it ran and imports a heavy submodule)."""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshc.sync import lazy_import

_names = itertools.count()


@pytest.fixture
def package(tmp_path: Path) -> Iterator[str]:
    """A fresh package: `__init__` appends to RUNS and imports `heavy`; `light` imports nothing of
    it but `from <package> import sibling` (as libraries do); `sibling` is small."""
    name = f"lazy_pkg_{next(_names)}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text('__version__ = "1.2.3"\nimport builtins\n'
                                      'builtins.__dict__.setdefault("LAZY_RUNS", []).append(__name__)\n'
                                      'from . import heavy\nGREETING = "hello"\n')
    (root / "heavy.py").write_text("VALUE = 1\n")
    (root / "sibling.py").write_text("VALUE = 2\n")
    (root / "light.py").write_text(f"from {name} import sibling\nfrom {name} import __version__\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def runs() -> list[str]:
    import builtins

    return list(builtins.__dict__.get("LAZY_RUNS", []))


def test_a_submodule_loads_without_the_package_init(package: str) -> None:
    before = runs()
    assert lazy_import.package_without_init(package, submodules=("sibling",), version=True)
    light = importlib.import_module(f"{package}.light")
    assert light.sibling.VALUE == 2 and light.__version__ == "1.2.3"
    assert f"{package}.heavy" not in sys.modules and runs() == before
    assert lazy_import.is_deferred(package)


def test_the_init_runs_once_when_the_package_is_asked_for_a_name_it_lacks(package: str) -> None:
    before = runs()
    lazy_import.package_without_init(package)
    module = importlib.import_module(package)
    assert module.GREETING == "hello"                    # runs __init__, which imports heavy
    assert f"{package}.heavy" in sys.modules and runs() == [*before, package]
    assert module.GREETING == "hello" and runs() == [*before, package]   # once
    assert not lazy_import.is_deferred(package)
    with pytest.raises(AttributeError):
        module.missing   # noqa: B018


def test_a_name_that_is_not_a_listed_submodule_runs_the_init(package: str, tmp_path: Path) -> None:
    """The `__init__` may bind a submodule's name to something else (a function of it): asked
    for that name, the package gives what its `__init__` binds."""
    init = tmp_path / package / "__init__.py"
    init.write_text(init.read_text() + "from .sibling import VALUE as sibling\n")
    lazy_import.package_without_init(package)
    module = importlib.import_module(package)
    assert module.sibling == 2 and f"{package}.heavy" in sys.modules


def test_a_package_imported_already_is_left_alone(package: str) -> None:
    importlib.import_module(package)
    assert not lazy_import.package_without_init(package)


def test_no_version_line_means_a_normal_import(package: str, tmp_path: Path) -> None:
    (tmp_path / package / "__init__.py").write_text("X = 1\n")
    assert not lazy_import.package_without_init(package, version=True)
    assert package not in sys.modules


def test_a_hidden_module_fails_to_import_inside_and_imports_after(package: str) -> None:
    with lazy_import.hidden(f"{package}_absent", "json"):
        with pytest.raises(ImportError):
            importlib.import_module(f"{package}_absent")
        import json   # imported already: left alone

        assert json.dumps(1) == "1"
    assert f"{package}_absent" not in sys.modules
    with pytest.raises(ModuleNotFoundError):     # not installed: the ordinary error again
        importlib.import_module(f"{package}_absent")
