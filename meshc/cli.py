"""The `meshc` command: parse arguments, run one verb, map outcomes to exit codes.

Exit codes: 0 ok, 1 the input is invalid or the operation failed, 2 usage or I/O error.
No traceback reaches the user for bad input; an unexpected crash says it is a bug.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType, ModuleType
from typing import Any, NoReturn

# Only this, at import: the rest of meshc is imported once main() has the code cache active
# (meshc.cache, itself imported by main()), so that the classes those imports define are defined
# through it.
from meshc import __version__

COMMANDS = (
    "validate",
    "build",
    "diff",
    "plan",
    "apply",
    "watch",
    "schema",
    "graph",
    "set_weights",
    "ca",
)

# Verbs whose run starts by importing the pipeline: it is imported as part of start-up, with the
# cycle collector paused (meshc.commands.common.long_lived_imports).
_COMPILING_VERBS = frozenset({"validate", "build"})
# Verbs that check a spec, and so may declare its models light (meshc.validate.light): every one
# but `schema`, which generates the JSON Schema with pydantic.
# (By module: the verbs' modules import the models, so this is decided before they are imported.)
_LIGHT_VERBS = frozenset({"validate", "build", "diff", "plan", "apply", "watch", "graph", "set_weights"})


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns (COLUMNS, else the terminal of stdout, else 80), without
    importing shutil, and with it zlib, bz2 and lzma: argparse makes a help formatter for every
    argument it adds (to check its metavar), and every one asks for the width."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, its default width (the terminal's, less 2) found as shutil finds it."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        from meshc.commands.common import EXIT_USAGE

        self.print_usage(sys.stderr)
        sys.stderr.write(f"meshc: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _command_modules(names: Sequence[str] = COMMANDS) -> list[ModuleType]:
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"meshc.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"meshc.commands.{name}":
                raise
    return modules


def _verb_modules(args: Sequence[str] | None) -> Sequence[str]:
    """The command modules the parser needs: only the verb's own when args name one. Importing a
    verb pulls in what it needs (a cluster client, Git, pydantic...): `meshc validate` must not
    pay for `meshc apply`. Help, a verb meshc does not know, or no args at all need every verb."""
    if args is None:
        return COMMANDS
    verb = next((arg for arg in args if not arg.startswith("-")), None)
    if verb is None or any(arg in ("-h", "--help") for arg in args[:args.index(verb)]):
        return COMMANDS
    module = verb.replace("-", "_")
    return (module,) if module in COMMANDS else COMMANDS


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised where the verb is, so that its cleanup runs as for Ctrl-C."""


def _terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, `timeout`, a pod stopped) ends a verb as Ctrl-C does, through
    its cleanup: a build's staging directory and workers go, OUT stays as it was. (watch sets
    handlers of its own that finish the current apply first.) The previous handler comes back
    after, for a process that runs main() and goes on; only the main thread can set one."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
        handled = True
    except ValueError:  # not the main thread (asked of signal, not of threading, which a validate never imports)
        handled = False
    try:
        yield
    finally:
        if handled:
            signal.signal(signal.SIGTERM, previous)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for argv: every verb's sub-parser, or (given argv) only the one argv names."""
    parser = _Parser(prog="meshc", description="Compile mesh.yaml into Envoy, Kubernetes and etcd config, "
                     "and keep a cluster in sync with it.")
    parser.add_argument("--version", action="version", version=f"meshc {__version__}")
    # prog given: argparse would otherwise format the parser's usage to find it (the same "meshc").
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog=parser.prog)
    for module in _command_modules(_verb_modules(argv)):
        sub = verbs.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.register(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None, *, light_models: bool = False, ends_process: bool = False) -> int:
    """Run one verb. `light_models`: a verb that checks a spec may declare the spec's models without
    pydantic when its compiled validator is in the cache (meshc.validate.light); only for a process
    that ends with the command, as the models stay so declared in it. `ends_process`: the caller
    ends the process with end_process once this returns, so what the verb leaves to the exit is
    never freed (meshc.commands.common.left_to_exit)."""
    argv = sys.argv[1:] if argv is None else argv
    with _collector_paused():
        from meshc import cache     # and dataclasses, inspect...
    # Importing a verb's modules defines a hundred-odd dataclasses (meshc's IR, pydantic's
    # internals...): their generated methods' code comes from the cache, compiled once (meshc.cache).
    with cache.generated_code_cached():
        return _main(argv, light_models, ends_process)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cycle collector off while start-up imports modules and builds the parser: they make
    long-lived objects and no garbage, and the heap they grow makes each collection dearer (seven
    of them in a validate's start-up). As it was after, also when the parser exits."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _main(argv: Sequence[str], light_models: bool, ends_process: bool) -> int:
    with _collector_paused():
        from meshc.commands.common import EXIT_INVALID, EXIT_USAGE, long_lived_imports, process_ends_with_command
        from meshc.diagnostics import MeshcError
        from meshc.report import emit_diagnostics

        if ends_process:
            process_ends_with_command()
        verbs = _verb_modules(argv)
        if light_models and len(verbs) == 1 and verbs[0] in _LIGHT_VERBS:
            from meshc.validate.compiled import load_light

            with long_lived_imports():
                load_light()
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with _sigterm_interrupts():
            if args.command in _COMPILING_VERBS:
                with long_lived_imports():
                    importlib.import_module("meshc.pipeline")
            return int(args.run(args))
    except Terminated:
        sys.stderr.write("meshc: terminated\n")
        return 128 + signal.SIGTERM
    except MeshcError as exc:
        as_json = getattr(args, "format", "") == "json"
        emit_diagnostics(exc.diagnostics, sys.stdout if as_json else sys.stderr, "json" if as_json else "text")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("meshc: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as exc:  # a bug: say so plainly; MESHC_DEBUG=1 shows the traceback
        if os.environ.get("MESHC_DEBUG"):
            raise
        sys.stderr.write(f"meshc: internal error: {type(exc).__name__}: {exc}\n"
                         "meshc: this is a bug in meshc; rerun with MESHC_DEBUG=1 for details\n")
        return EXIT_INVALID


def run() -> NoReturn:
    """The `meshc` command: main(), then exit."""
    code = main(light_models=True, ends_process=True)
    # The process ends now. Freezing what is left keeps a teardown (when exit() falls back to
    # one) from running full garbage collections over it.
    gc.freeze()
    end_process(code)


def end_process(code: int) -> NoReturn:
    """End the process with this status as sys.exit(code) would, without tearing the interpreter
    down: freeing every object still alive one by one (the IR of a large build, the modules) is
    work nobody sees the result of, 20-40 ms after a 1,000-service build. What can be seen of an
    exit still happens, in the interpreter's order: the atexit handlers run (weakref.finalize
    callbacks such as temporary directories' cleanup, logging's shutdown, coverage), then stdout
    and stderr are flushed. When the teardown would do more than that (a thread it would wait
    for is still running), or a stream cannot be flushed (its error is then reported, with the
    status, as the teardown reports it), this is sys.exit(code). A verb closes its own files
    (with blocks): the teardown is not what flushes them."""
    threading = sys.modules.get("threading")    # never imported: no thread was started with it
    if threading is not None and any(not thread.daemon and thread is not threading.main_thread()
                                     for thread in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()     # and clears them: a fallback below does not run them twice
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    run()
