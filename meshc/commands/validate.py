"""`meshc validate [SPEC...]`: every diagnostic, sorted by position; exit 1 when any error."""

from __future__ import annotations

import argparse

from meshc.commands.common import (
    EXIT_INVALID,
    EXIT_OK,
    add_format_argument,
    add_spec_argument,
    failed,
    ignored_codes_removed,
    long_lived_imports,
    read_source,
    report,
)
from meshc.diagnostics import Diagnostic

NAME = "validate"
HELP = "check mesh.yaml and print every diagnostic"


def register(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    # Several files at once, as pre-commit passes them; their diagnostics are reported together.
    parser.add_argument("more_specs", nargs="*", metavar="SPEC", help="further spec files to check")
    add_format_argument(parser)


def run(args: argparse.Namespace) -> int:
    with long_lived_imports():
        from meshc.pipeline import check

    diagnostics: list[Diagnostic] = []
    for spec in [args.spec, *getattr(args, "more_specs", [])]:
        diagnostics += check(read_source(argparse.Namespace(**{**vars(args), "spec": spec}))).diagnostics
    diagnostics = ignored_codes_removed(diagnostics, args)
    report(diagnostics, args, always=True)
    return EXIT_INVALID if failed(diagnostics, args.strict) else EXIT_OK
