"""Start-up. The code cache of generated dataclass methods (meshc.cache): classes defined through
it are the classes `dataclasses` makes without it, a second process compiles nothing, and a
damaged, foreign or unwritable cache costs only the time. And what the first import of the
pipeline made is frozen out of the cycle collector's sight, once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshc import cache

ROOT = Path(__file__).resolve().parent.parent

# Defines the IR (48 frozen slotted dataclasses), with the cache in sys.argv[1] or without one
# ("-"), and prints what the classes are made of and how they behave.
PROBE = r"""
import collections, contextlib, dataclasses, inspect, json, pickle, sys, types, typing
from pathlib import Path
from meshc import cache

def code(c):
    return [c.co_name, c.co_filename, c.co_firstlineno, c.co_code.hex(), c.co_argcount, c.co_kwonlyargcount,
            c.co_flags, list(c.co_names), list(c.co_varnames), list(c.co_freevars),
            [code(k) if isinstance(k, types.CodeType) else repr(k) for k in c.co_consts]]

where = sys.argv[1]
with (cache.generated_code_cached(Path(where)) if where != "-" else contextlib.nullcontext()) as codes:
    from meshc.diagnostics import Span
    from meshc.resolve import ir
    # typing compiles an annotation written as text when it is made (pydantic-core's TypedDicts...)
    ref = typing.ForwardRef("dict[str, tuple[int, ...]] | None")
    Pair = collections.namedtuple("Pair", "first second")     # its __new__ is made from text

classes = {}
for name, cls in sorted(vars(ir).items()):
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == ir.__name__:
        classes[name] = {
            "methods": {m: code(f.__code__) for m, f in sorted(vars(cls).items()) if inspect.isfunction(f)},
            "doc": cls.__doc__, "signature": str(inspect.signature(cls)), "slots": list(cls.__slots__),
            "match_args": list(cls.__match_args__), "params": repr(cls.__dataclass_params__),
            "fields": [[f.name, f.type if isinstance(f.type, str) else repr(f.type), None if f.default is dataclasses.MISSING else repr(f.default), f.init, f.repr, f.compare, f.hash, f.kw_only]
                       for f in dataclasses.fields(cls)],
        }
here, there = Span("mesh.yaml", 3, 1), Span("mesh.yaml", 9, 5)
a, b = ir.Backoff(1, 2), ir.Backoff(1, 2)
key, moved = ir.LoadBalancing(ir.LbPolicy.ROUND_ROBIN, None, here), ir.LoadBalancing(ir.LbPolicy.ROUND_ROBIN, None, there)
try:
    a.base_interval_ms = 3
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
behaviour = {
    "eq": a == b, "hash": hash(a) == hash(b), "repr": repr(a), "frozen": frozen,
    "spans_ignored": key == moved and hash(key) == hash(moved) and key.span != moved.span,
    "replace": repr(dataclasses.replace(a, max_interval_ms=5)),
    "pickle": pickle.loads(pickle.dumps(moved)) == moved and pickle.loads(pickle.dumps(moved)).span == there,
}
behaviour["forward_ref"] = [code(ref.__forward_code__), repr(eval(ref.__forward_code__))]
behaviour["namedtuple"] = [code(Pair.__new__.__code__), repr(Pair(1, second=2))]
print(json.dumps({"classes": classes, "behaviour": behaviour,
                  "compiled": codes.compiled if codes else None, "used": len(codes.used) if codes else None}))
"""


def probe(cache_dir: Path | str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", PROBE, str(cache_dir)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_classes_defined_through_the_cache_are_those_dataclasses_makes(tmp_path: Path) -> None:
    plain = probe("-")
    first = probe(tmp_path)      # compiles every method, writes the file
    second = probe(tmp_path)     # reads every method's code from it
    assert first["compiled"] == first["used"] and isinstance(first["used"], int) and first["used"] > 48
    assert second["compiled"] == 0 and second["used"] == first["used"]
    for run in (first, second):
        assert run["classes"] == plain["classes"]
        assert run["behaviour"] == plain["behaviour"]
    behaviour = dict(plain["behaviour"])   # type: ignore[call-overload]
    assert behaviour.pop("forward_ref")[1] == "dict[str, tuple[int, ...]] | None"
    assert behaviour.pop("namedtuple")[1] == "Pair(first=1, second=2)"
    assert behaviour == {
        "eq": True, "hash": True, "repr": "Backoff(base_interval_ms=1, max_interval_ms=2)", "frozen": True,
        "spans_ignored": True, "replace": "Backoff(base_interval_ms=1, max_interval_ms=5)", "pickle": True}
    written = cache.code_cache_path(tmp_path)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_a_damaged_file_is_compiled_again_and_replaced(tmp_path: Path) -> None:
    path = cache.code_cache_path(tmp_path)
    path.write_bytes(b"\xe3not marshal data at all")
    path.chmod(0o600)
    damaged = probe(tmp_path)
    assert damaged["compiled"] == damaged["used"]
    assert probe(tmp_path)["compiled"] == 0


def test_a_file_others_could_write_is_not_read(tmp_path: Path) -> None:
    probe(tmp_path)
    path = cache.code_cache_path(tmp_path)
    path.chmod(0o666)
    foreign = probe(tmp_path)
    assert foreign["compiled"] == foreign["used"]        # nothing read from it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600    # and replaced by meshc's own


def test_an_unwritable_cache_costs_only_the_time(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    run = probe(blocked)
    assert run["compiled"] == run["used"] and run["classes"] == probe("-")["classes"]


def test_another_hook_on_dataclasses_is_left_alone(tmp_path: Path) -> None:
    import dataclasses

    def hook(source: object, globals: object = None, locals: object = None) -> None:
        raise AssertionError("not called here")

    setattr(dataclasses, "exec", hook)   # noqa: B010 - the stubs give dataclasses no exec to assign
    try:
        with cache.generated_code_cached(tmp_path) as codes:
            assert codes is None and vars(dataclasses)["exec"] is hook
        assert vars(dataclasses)["exec"] is hook
    finally:
        delattr(dataclasses, "exec")
    assert not cache.code_cache_path(tmp_path).exists()


def test_meshc_validate_starts_from_the_cache(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), cache.CACHE_DIR_ENV: str(tmp_path)}
    argv = [sys.executable, "-m", "meshc.cli", "validate", "examples/shop/mesh.yaml"]
    for _ in range(2):
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
    codes = cache.CodeCache(cache.code_cache_path(tmp_path)).codes
    # the IR's generated methods are among what the first run kept
    assert any("__init__" in source and "base_interval_ms" in source for source in codes)


def test_what_start_up_imports_is_frozen_once(tmp_path: Path) -> None:
    """The objects the pipeline's import made are moved out of the collector's sight (gc.freeze),
    by the first main() of a process only: a later call would freeze the caller's own objects."""
    code = ("import contextlib, gc, io, json\nfrom meshc.cli import main\n"
            "before = gc.get_freeze_count()\n"
            "with contextlib.redirect_stderr(io.StringIO()): first = main(['validate', 'examples/shop/mesh.yaml'])\n"
            "after_first = gc.get_freeze_count()\nkept = [object() for _ in range(100)]\n"
            "with contextlib.redirect_stderr(io.StringIO()): second = main(['validate', 'examples/shop/mesh.yaml'])\n"
            "print(json.dumps([first, second, before, after_first, gc.get_freeze_count(), gc.isenabled()]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), cache.CACHE_DIR_ENV: str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
    first, second, before, after_first, after_second, enabled = json.loads(result.stdout)
    assert (first, second) == (0, 0)
    assert before == 0 and after_first > 10_000       # pydantic, the models, the IR...
    assert after_second == after_first and enabled     # and nothing more; the collector is back on


def test_every_ir_class_has_a_docstring_of_its_own() -> None:
    """A dataclass without a docstring gets one made from inspect.signature() when it is defined:
    a fifth of defining the IR, at every start."""
    import dataclasses

    from meshc.resolve import ir

    classes = [c for c in vars(ir).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
               and c.__module__ == ir.__name__]
    assert len(classes) >= 48
    generated = [c.__name__ for c in classes if not c.__doc__ or c.__doc__.startswith(f"{c.__name__}(")]
    assert generated == []


def test_a_full_cache_keeps_what_its_last_run_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries accumulate across meshc versions sharing the directory, up to MAX_ENTRIES; past it,
    a run that compiled something writes only what it used."""
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    path = cache.code_cache_path(tmp_path)
    first = cache.CodeCache(path)
    for n in range(3):
        first.code(f"x = {n}", "exec")
    first.save()
    assert len(cache.CodeCache(path).codes) == 3          # under the bound: everything kept
    second = cache.CodeCache(path)
    assert second.code("x = 0", "exec") is second.codes["exec\0x = 0"] and second.compiled == 0
    second.code("y = 1", "exec")                          # a fourth entry: over the bound
    second.save()
    assert set(cache.CodeCache(path).codes) == {"exec\0x = 0", "exec\0y = 1"}
    unchanged = cache.CodeCache(path)
    unchanged.code("x = 0", "exec")
    unchanged.save()                                     # nothing compiled: nothing written
    assert set(cache.CodeCache(path).codes) == {"exec\0x = 0", "exec\0y = 1"}


# What a `meshc validate` of a small spec (no endpoint addresses, env templates or pod settings)
# does not import, though an earlier meshc did: a validate is mostly start-up, and importing
# each of these was a measurable part of it. Where they are imported instead: pathlib (and urllib.parse) by a
# cache write; hashlib (OpenSSL) by builds and diffs; orjson (uuid, platform) and json by
# rendering and --format json; ipaddress, string, unicodedata by the checks that need them;
# threading by nothing a validate runs; pydantic by a run whose validator is not cached; shutil by
# nothing (argparse's help formatter measured the terminal with it); pickle by a cache write.
NOT_IMPORTED_BY_VALIDATE = ("pathlib", "urllib.parse", "hashlib", "_hashlib", "threading", "json", "orjson",
                            "uuid", "platform", "ipaddress", "string", "unicodedata", "tempfile", "zipfile",
                            "pydantic", "shutil", "pickle")


def test_a_validate_imports_none_of_what_it_does_not_use(tmp_path: Path) -> None:
    """Run as the `meshc` command runs it (light models, its process ending with the command),
    in an interpreter started without `site`: a `.pth` file of the environment may import any
    of these into every Python process before meshc starts."""
    from bench.startup import SPEC, site_packages

    spec = tmp_path / "mesh.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *site_packages()]),
           cache.CACHE_DIR_ENV: str(tmp_path / "cache")}
    for _ in range(2):   # the first writes the compiled validator, the second (light) the code it compiled
        warm = subprocess.run([sys.executable, "-S", "-m", "meshc.cli", "validate", str(spec)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env=env)
        assert warm.returncode == 0, warm.stderr
    code = ("import json, sys\nbefore = set(sys.modules)\nfrom meshc import cli\n"
            f"code = cli.main(['validate', {str(spec)!r}], light_models=True, ends_process=True)\n"
            "print(json.dumps([code, sorted(set(sys.modules) - before)]))")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    returned, imported = json.loads(result.stdout.splitlines()[-1])
    assert returned == 0
    assert "meshc.resolve.ir" in imported and "meshc.validate.light" in imported   # it did validate, light
    assert sorted(set(NOT_IMPORTED_BY_VALIDATE) & set(imported)) == []


def test_the_verbs_are_named_as_argparse_would_name_them() -> None:
    """build_parser gives add_subparsers its prog (argparse would format a usage line to find it,
    importing shutil): the same prefix, and each verb's usage reads `meshc VERB`."""
    import argparse

    from meshc.cli import build_parser

    def prefix(parser: argparse.ArgumentParser) -> str:
        [verbs] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return str(verbs._prog_prefix)

    computed = argparse.ArgumentParser(prog="meshc")
    computed.add_argument("--version", action="version", version="v")
    computed.add_subparsers(dest="command", metavar="COMMAND")
    parser = build_parser(["validate", "mesh.yaml"])
    assert prefix(parser) == prefix(computed) == "meshc"
    [verbs] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert verbs.choices["validate"].format_usage().startswith("usage: meshc validate ")


@pytest.mark.parametrize("columns", [None, "120", "0", "wide"])
def test_help_is_as_wide_as_argparse_makes_it(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """meshc's help formatter finds the terminal's width without shutil, as shutil does."""
    import argparse
    import shutil

    from meshc.cli import _Formatter, terminal_columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns
    mine, theirs = _Formatter("meshc"), argparse.HelpFormatter("meshc")
    assert (mine._width, mine._max_help_position) == (theirs._width, theirs._max_help_position)
