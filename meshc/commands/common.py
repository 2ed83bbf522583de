"""What several verbs share: reading the spec (file or Git revision), printing diagnostics, exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from meshc.diagnostics import Diagnostic, MeshcError, Severity
from meshc.load import SpecSource, read_spec_file
from meshc.report import FORMATS, emit_diagnostics, summary

if TYPE_CHECKING:
    from meshc.pipeline import BuildOptions, Checked, Compiled

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", default="mesh.yaml", metavar="SPEC",
                        help="path to mesh.yaml (default: ./mesh.yaml); inside the repo with --repo")
    parser.add_argument("--repo", metavar="PATH", help="read SPEC from this Git repository instead of the work tree")
    parser.add_argument("--rev", metavar="REV", help="the revision to read SPEC at (default: HEAD); needs --repo")


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text", help="how to print diagnostics")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")


def read_source(args: argparse.Namespace) -> SpecSource:
    """The spec bytes from a file, or from a Git revision (never the work tree) with --repo."""
    if getattr(args, "repo", None):
        from meshc.load.git import read_spec_at_revision

        return read_spec_at_revision(args.repo, args.rev or "HEAD", args.spec)
    if getattr(args, "rev", None):
        raise MeshcError([Diagnostic("E001", Severity.ERROR, "--rev needs --repo PATH")], EXIT_USAGE)
    return read_spec_file(args.spec)


def report(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic], args: argparse.Namespace) -> None:
    fmt = getattr(args, "format", "text")
    if fmt not in FORMATS:
        fmt = "text"
    emit_diagnostics(diagnostics, sys.stderr, fmt)
    if fmt == "text" and diagnostics:
        sys.stderr.write(f"{summary(diagnostics)}\n")


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


def usage_error(message: str) -> MeshcError:
    return MeshcError([Diagnostic("E001", Severity.ERROR, message)], EXIT_USAGE)


def build_options(args: argparse.Namespace) -> BuildOptions:
    from meshc.pipeline import BuildOptions

    from meshc.defaults import GATEWAY_TLS_DIR

    return BuildOptions(config_dir=args.envoy_config_dir, envoy_hosts=dict(args.envoy_host),
                        gateway_tls_dir=getattr(args, "gateway_tls_dir", GATEWAY_TLS_DIR))


def check_from_args(args: argparse.Namespace) -> Checked:
    """Check SPEC (or --repo/--rev), printing its diagnostics. A --envoy-host naming no deployed
    service or version is a usage error."""
    from meshc.pipeline import check

    checked = check(read_source(args))
    report(checked.diagnostics, args)
    hosts = dict(args.envoy_host)
    if checked.mesh is not None and hosts:
        from meshc.emit.envoy.hosts import unknown_host_keys

        unknown = unknown_host_keys(checked.mesh, hosts)
        if unknown:
            raise usage_error(f"--envoy-host names no deployed service or version: {', '.join(unknown)}")
    return checked


def compile_from_args(args: argparse.Namespace) -> Compiled:
    """check_from_args, then the bundle when the spec checked clean."""
    from meshc.pipeline import Compiled, build_bundle

    checked = check_from_args(args)
    if not checked.ok:
        return Compiled(checked, None)
    return Compiled(checked, build_bundle(checked, build_options(args)))
