"""`meshc diff [--repo PATH] [REV_A [REV_B [SPEC]]]`: what changing mesh.yaml from REV_A to REV_B means.

As `git diff` does: with one revision, REV_A is compared with the work tree (the spec as edited,
not yet committed); with none, HEAD is.

Exit codes, as `git diff --exit-code` does: 0 nothing changed, 3 something changed, 1 a side is
invalid (its diagnostics are printed, and which side it is), 2 usage or I/O (unknown revision...).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from meshc.commands.common import EXIT_INVALID, EXIT_OK, at_least, report
from meshc.diagnostics import MeshcError, error
from meshc.progress import Progress

if TYPE_CHECKING:
    from meshc.load.git import GitSpecReader
    from meshc.review.forked import Pending

NAME = "diff"
HELP = ("semantic diff of mesh.yaml between two Git revisions (or a revision and the work tree), "
        "and the output it would change")
EXIT_CHANGED = 3
WORK_TREE = "work tree"
DEFAULT_SPEC = "mesh.yaml"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", metavar="PATH", help="the Git repository (default: .)")
    parser.add_argument("rev_a", nargs="?", default="HEAD", metavar="REV_A",
                        help="the revision to compare from (e.g. the target branch; default HEAD)")
    parser.add_argument("rev_b", nargs="?", default=None, metavar="REV_B",
                        help="the revision to compare to (default: the work tree, as `git diff` does)")
    parser.add_argument("spec", nargs="?", default=None, metavar="SPEC",
                        help="path of mesh.yaml inside the repository (default: mesh.yaml)")
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                        help="text (terminal), json (tools) or markdown (a pull-request comment)")
    parser.add_argument("-j", "--jobs", type=at_least(1), default=None, metavar="N",
                        help="processes that check the two revisions: 2 checks them at once, 1 one after the "
                        "other (default: 2 when two CPUs are usable and not all busy); the output is the same")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="color the text format (auto: when stdout is a terminal and NO_COLOR is unset)")


def run(args: argparse.Namespace) -> int:
    from meshc.pipeline import no_cycle_collection

    # A diff creates no garbage cycles worth collecting (specs, models, IR, files): the collector
    # would only rescan its growing heap, on both sides.
    return no_cycle_collection(_diff)(args)


def _diff(args: argparse.Namespace) -> int:
    from meshc.load.git import GitSpecReader
    from meshc.review.diff import Side
    from meshc.review.diff_format import render
    from meshc.review.forked import Comparison

    args.spec_given = args.spec is not None
    args.spec = args.spec or DEFAULT_SPEC
    # Git is read first, so that no helper process of it is shared with a child checking a side.
    with GitSpecReader(args.repo) as reader:
        _path_as_second_argument(reader, args)
        old = _read_side(reader, args.rev_a, args.spec)
        new = _read_side(reader, args.rev_b, args.spec) if args.rev_b else _work_tree_side(reader, args.spec)
    if isinstance(old, Side) and isinstance(new, Side):   # absent at both
        raise MeshcError([error("E001", f"{args.spec}: no such file at {args.rev_a} nor "
                                f"{f'at {args.rev_b}' if args.rev_b else 'in the work tree'}", None,
                                hint="the path is relative to the repository root")], 2)
    with Comparison(old, new, args.jobs or _default_jobs(), kept=True) as comparison, \
            Progress("comparing") as progress:
        old_side, new_side, diff = comparison.run(progress.step)
    invalid = [side for side in (old_side, new_side) if not side.valid]
    for side in invalid:
        sys.stderr.write(f"meshc: {side.path} is not valid at {side.label}{f' ({side.short})' if side.short else ''}:\n")
        report([d for d in side.diagnostics if d.is_error], argparse.Namespace(format="text"))
    if invalid or diff is None:
        which = " and ".join(side.label for side in invalid)
        sys.stderr.write(f"meshc: no diff: the spec is invalid at {which}\n")
        return EXIT_INVALID
    sys.stdout.write(render(diff, args.format, color=_color(args)))
    sys.stdout.flush()
    comparison.keep()   # the old revision's check, for the next diff against it (the base branch's)
    return EXIT_CHANGED if diff.changed else EXIT_OK


def _default_jobs() -> int:
    """Two processes (one per side) when the child can get a CPU: this process may use two or more,
    and fewer other processes than CPUs are ready to run as the diff starts. On a saturated machine
    the child would only share this process's turn, and waiting for the slower of the two then
    makes the diff slower (measured: docs/performance.md)."""
    from meshc.commands.build import usable_cpus

    cpus = usable_cpus()
    return 2 if cpus >= 2 and _runnable_others() < cpus else 1


def _runnable_others() -> int:
    """Processes ready to run at this moment besides this one (Linux: /proc/loadavg, whose fourth
    field is "runnable/total"); 0 where that is unknown."""
    try:
        with open("/proc/loadavg", encoding="ascii") as loadavg:
            runnable = int(loadavg.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 0
    return max(0, runnable - 1)


def _path_as_second_argument(reader: GitSpecReader, args: argparse.Namespace) -> None:
    """`meshc diff HEAD other.yaml`: a second argument that is a file and no revision is SPEC, and
    the work tree the other side, as git tells paths from revisions."""
    if args.rev_b is None or args.spec_given or not os.path.isfile(os.path.join(args.repo, args.rev_b)):
        return
    try:
        reader.resolve(args.rev_b)
    except MeshcError:
        args.spec, args.rev_b = args.rev_b, None


def _work_tree_side(reader: GitSpecReader, spec: str) -> Pending:
    from meshc.review.diff import absent_side

    source = reader.read_work_tree(spec)
    if source is None:
        return absent_side(WORK_TREE, None, reader.relative_path(spec))
    return WORK_TREE, source


def _read_side(reader: GitSpecReader, rev: str, spec: str) -> Pending:
    """The spec to check at `rev` with its label, or the side of a revision without it."""
    from meshc.load.git import SpecNotInRevision
    from meshc.review.diff import absent_side

    try:
        source = reader.read(rev, spec)
    except SpecNotInRevision:
        return absent_side(rev, reader.resolve(rev), reader.relative_path(spec))
    return rev, source


def _color(args: argparse.Namespace) -> bool:
    if args.format != "text" or args.color == "never":
        return False
    return args.color == "always" or (sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
