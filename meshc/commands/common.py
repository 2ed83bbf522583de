"""What several verbs share: reading the spec (file or Git revision), printing diagnostics, exit codes."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from meshc.diagnostics import Diagnostic, MeshcError, Severity
from meshc.load import SpecSource, read_spec_file
from meshc.report import FORMATS, emit_diagnostics, summary

if TYPE_CHECKING:
    from meshc.pipeline import BuildOptions, Checked, Compiled, ResolvedHook

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Imports of a verb's stages (pydantic, the models, the IR, the emitters), with the cycle
    collector paused: they create long-lived objects and no garbage, which it would only scan
    again and again (5-7% of a short validate). What they made is then frozen (gc.freeze), so
    that the first collection after them does not scan it all either (4-5 ms: every object is
    still in its youngest generation). Only the first time: a process that calls main() again
    (tests) would otherwise freeze the objects of its own between calls."""
    first = "meshc.pipeline" not in sys.modules
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if first:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()


# Set by the `meshc` command (meshc.cli.run), whose process ends with its one verb and without
# the interpreter's teardown (meshc.cli.end_process): what a verb leaves to the exit is kept here
# and never freed. None in any other process (tests, a library caller), where nothing is kept.
_left_to_exit: list[object] | None = None


def process_ends_with_command() -> None:
    """This process ends once its command has run, by meshc.cli.end_process (see left_to_exit)."""
    global _left_to_exit
    if _left_to_exit is None:
        _left_to_exit = []


def command_ends_process() -> bool:
    """Whether this process ends once its command has run (process_ends_with_command)."""
    return _left_to_exit is not None


@contextmanager
def collector_paused() -> Iterator[None]:
    """A verb's work with the cycle collector paused: a build or a sync makes long-lived objects
    (the spec, its model, the IR, the bundle) and no cycle worth collecting, which the collector
    would only rescan. In the `meshc` command's process, what the verb leaves alive is frozen
    (gc.freeze) before the collector comes back: every object made while it was off is still in
    its youngest generation, and the first allocation after the verb would start a collection
    scanning them all, on the command's last stretch where nothing runs beside it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if command_ends_process():
            gc.freeze()
        if enabled:
            gc.enable()


def left_to_exit(*objects: object) -> None:
    """Objects a verb is done with when it returns, that it leaves to its process's exit rather
    than free one by one on the way out (a 1,000-service build's IR and its emitters' tables:
    ~10 ms on its last stretch, where nothing runs beside it). Only in the `meshc` command's
    process: anywhere else they are freed as usual."""
    if _left_to_exit is not None:
        _left_to_exit.extend(objects)


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", default="mesh.yaml", metavar="SPEC",
                        help="path to mesh.yaml (default: ./mesh.yaml; - reads standard input); inside the repo "
                        "with --repo")
    parser.add_argument("--repo", metavar="PATH", help="read SPEC from this Git repository instead of the work tree")
    parser.add_argument("--rev", metavar="REV", help="the revision to read SPEC at (default: HEAD); needs --repo")


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="how to print diagnostics: text and github on stderr, json on stdout")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--ignore", action="append", default=[], type=_warning_code, metavar="CODE",
                        help="do not report this warning (repeatable); to accept a warning for good, where "
                        "reviewers see it, use spec.analysis.ignore")


def _warning_code(text: str) -> str:
    code = text.strip().upper()
    if not (len(code) == 4 and code[0] == "W" and code[1:].isdigit()):
        raise argparse.ArgumentTypeError(f"'{text}' is not a warning code such as W302 (errors cannot be ignored)")
    return code


def ignored_codes_removed(diagnostics: Sequence[Diagnostic], args: argparse.Namespace) -> list[Diagnostic]:
    """The diagnostics without the warnings --ignore names."""
    ignored = set(getattr(args, "ignore", None) or ())
    return [d for d in diagnostics if d.is_error or d.code not in ignored]


def read_source(args: argparse.Namespace) -> SpecSource:
    """The spec bytes from a file, or from a Git revision (never the work tree) with --repo."""
    if getattr(args, "repo", None):
        from meshc.load.git import read_spec_at_revision

        return read_spec_at_revision(args.repo, args.rev or "HEAD", args.spec)
    if getattr(args, "rev", None):
        raise MeshcError([Diagnostic("E001", Severity.ERROR, "--rev needs --repo PATH")], EXIT_USAGE)
    if args.spec == STDIN:
        return read_spec_stdin()
    return read_spec_file(args.spec)


STDIN = "-"


def read_spec_stdin() -> SpecSource:
    """`meshc validate -`: the spec from standard input (an editor, `git show REV:mesh.yaml | ...`)."""
    from meshc.load.source import MAX_SPEC_BYTES

    try:
        data = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    except (OSError, ValueError, AttributeError) as exc:
        raise usage_error(f"cannot read the spec from standard input: {exc}") from None
    return SpecSource(name="<stdin>", data=data)


def report(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic], args: argparse.Namespace,
           *, always: bool = False) -> None:
    """Print diagnostics: text and github to stderr; json to stdout, where `| jq` reads it. A verb
    whose own result is JSON (plan, apply, set-weights) prints the list only when it is not
    empty (`always` prints `[]` too: validate and build, whose result the list is)."""
    fmt = getattr(args, "format", "text")
    if fmt not in FORMATS:
        fmt = "text"
    if fmt == "json":
        if diagnostics or always:
            emit_diagnostics(diagnostics, sys.stdout, fmt)
        return
    emit_diagnostics(diagnostics, sys.stderr, fmt)
    if fmt == "text" and diagnostics:
        sys.stderr.write(f"{summary(diagnostics, strict=bool(getattr(args, 'strict', False)))}\n")


def failed(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic], strict: bool) -> bool:
    return any(d.is_error or strict for d in diagnostics)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number, `minimum` or more (--prune-limit, --jobs)."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more")
        return value

    return whole_number


def config_dir(text: str) -> str:
    """An argparse type for --envoy-config-dir: a directory Envoy can be pointed at. An empty one
    would give a bootstrap whose cds/lds paths Envoy rejects; control characters cannot be written."""
    from meshc.text import first_unsafe

    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory, e.g. /etc/envoy")
    if first_unsafe(text, token=False) is not None or "\n" in text or "\t" in text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a control character")
    return text


def usage_error(message: str) -> MeshcError:
    return MeshcError([Diagnostic("E001", Severity.ERROR, message)], EXIT_USAGE)


def build_options(args: argparse.Namespace) -> BuildOptions:
    from meshc.pipeline import BuildOptions

    from meshc.defaults import GATEWAY_TLS_DIR
    from meshc.emit.naming import DEFAULT_TLS_DIR

    return BuildOptions(config_dir=args.envoy_config_dir, envoy_hosts=dict(args.envoy_host),
                        tls_dir=getattr(args, "tls_dir", None) or DEFAULT_TLS_DIR,
                        gateway_tls_dir=getattr(args, "gateway_tls_dir", GATEWAY_TLS_DIR))


def check_from_args(args: argparse.Namespace, *, always: bool = False,
                    on_resolved: ResolvedHook | None = None) -> Checked:
    """Check SPEC (or --repo/--rev), printing its diagnostics. A --envoy-host naming no deployed
    service or version is a usage error. `on_resolved`: see pipeline.ResolvedHook."""
    return reported(checked_source(read_source(args), args, on_resolved), args, always=always)


def checked_source(source: SpecSource, args: argparse.Namespace, on_resolved: ResolvedHook | None = None) -> Checked:
    """The check of `source` (SPEC as read), with a progress line; nothing printed of it yet."""
    with long_lived_imports():
        from meshc.pipeline import check
    from meshc.progress import Progress

    with Progress("build") as progress:
        progress.step(f"checking {args.spec}")
        return check(source, on_resolved)


def reported(checked: Checked, args: argparse.Namespace, *, always: bool = False) -> Checked:
    """The checked spec without the warnings --ignore names, its diagnostics printed (see
    check_from_args): also for a check made by an earlier run and kept (meshc.compile_cache)."""
    checked = replace(checked, diagnostics=tuple(ignored_codes_removed(checked.diagnostics, args)))
    report(checked.diagnostics, args, always=always)
    hosts = dict(args.envoy_host)
    if checked.mesh is not None and hosts:
        from meshc.emit.envoy.hosts import unknown_host_keys

        unknown = unknown_host_keys(checked.mesh, hosts)
        if unknown:
            raise usage_error(f"--envoy-host names no deployed service or version: {', '.join(unknown)}")
    return checked


def compile_from_args(args: argparse.Namespace) -> Compiled:
    """check_from_args, then the bundle when the spec checked clean."""
    from meshc.pipeline import built

    return built(check_from_args(args), build_options(args))
