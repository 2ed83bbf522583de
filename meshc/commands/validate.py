"""`meshc validate [SPEC]`: every diagnostic, sorted by position; exit 1 when any error."""

from __future__ import annotations

import argparse

from meshc.commands.common import EXIT_INVALID, EXIT_OK, add_format_argument, add_spec_argument, failed, read_source, report

NAME = "validate"
HELP = "check mesh.yaml and print every diagnostic"


def register(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_format_argument(parser)


def run(args: argparse.Namespace) -> int:
    from meshc.pipeline import check

    checked = check(read_source(args))
    report(checked.diagnostics, args)
    return EXIT_INVALID if failed(checked.diagnostics, args.strict) else EXIT_OK
