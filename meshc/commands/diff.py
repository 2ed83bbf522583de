"""`meshc diff --repo PATH REV_A REV_B [SPEC]`: what changing mesh.yaml from REV_A to REV_B means.

Exit codes, as `git diff --exit-code` does: 0 nothing changed, 3 something changed, 1 a side is
invalid (its diagnostics are printed, and which side it is), 2 usage or I/O (unknown revision...).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from meshc.commands.common import EXIT_INVALID, EXIT_OK, report
from meshc.diagnostics import MeshcError, error

if TYPE_CHECKING:
    from meshc.load.git import GitSpecReader
    from meshc.review.diff import Side

NAME = "diff"
HELP = "semantic diff of mesh.yaml between two Git revisions, and the output it would change"
EXIT_CHANGED = 3


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", metavar="PATH", help="the Git repository (default: .)")
    parser.add_argument("rev_a", metavar="REV_A", help="the revision to compare from (e.g. the target branch)")
    parser.add_argument("rev_b", metavar="REV_B", help="the revision to compare to (e.g. HEAD)")
    parser.add_argument("spec", nargs="?", default="mesh.yaml", metavar="SPEC",
                        help="path of mesh.yaml inside the repository (default: mesh.yaml)")
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                        help="text (terminal), json (tools) or markdown (a pull-request comment)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="color the text format (auto: when stdout is a terminal and NO_COLOR is unset)")


def run(args: argparse.Namespace) -> int:
    from meshc.load.git import GitSpecReader
    from meshc.review.diff import diff_sides
    from meshc.review.diff_format import render

    with GitSpecReader(args.repo) as reader:
        old = _read_side(reader, args.rev_a, args.spec)
        new = _read_side(reader, args.rev_b, args.spec)
    if not old.exists and not new.exists:
        raise MeshcError([error("E001", f"{args.spec}: no such file at {args.rev_a} nor at {args.rev_b}", None,
                                hint="the path is relative to the repository root")], 2)
    invalid = [side for side in (old, new) if not side.valid]
    for side in invalid:
        sys.stderr.write(f"meshc: {side.path} is not valid at {side.label} ({side.short}):\n")
        report([d for d in side.diagnostics if d.is_error], argparse.Namespace(format="text"))
    if invalid:
        which = " and ".join(side.label for side in invalid)
        sys.stderr.write(f"meshc: no diff: the spec is invalid at {which}\n")
        return EXIT_INVALID
    diff = diff_sides(old, new)
    sys.stdout.write(render(diff, args.format, color=_color(args)))
    return EXIT_CHANGED if diff.changed else EXIT_OK


def _read_side(reader: GitSpecReader, rev: str, spec: str) -> Side:
    from meshc.load.git import SpecNotInRevision
    from meshc.review.diff import absent_side, build_side

    try:
        source = reader.read(rev, spec)
    except SpecNotInRevision:
        return absent_side(rev, reader.resolve(rev), reader.relative_path(spec))
    return build_side(rev, source)


def _color(args: argparse.Namespace) -> bool:
    if args.format != "text" or args.color == "never":
        return False
    return args.color == "always" or (sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
