"""`meshc set-weights SPEC SERVICE VERSION=WEIGHT...`: shift traffic between versions, editing mesh.yaml in place."""

from __future__ import annotations

import argparse
import json
import sys

from meshc.commands.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, add_format_argument, failed, report
from meshc.diagnostics import MeshcError, error

NAME = "set-weights"
HELP = "set version weights of one service in mesh.yaml, keeping comments and layout"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="the mesh.yaml to edit")
    parser.add_argument("service", metavar="SERVICE", help="the service whose versions get new weights")
    parser.add_argument("weights", nargs="+", metavar="VERSION=WEIGHT",
                        help="new weight (percent) per version; the service's weights must sum to 100 afterwards")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the change as a unified diff and leave the file alone")
    add_format_argument(parser)


def run(args: argparse.Namespace) -> int:
    from meshc.review.set_weights import parse_assignments, plan_weights, write_atomically

    weights = parse_assignments(args.weights)
    text = _read_text(args.spec)
    edit = plan_weights(args.spec, text, args.service, weights)
    report(edit.diagnostics, args)
    if failed(edit.diagnostics, args.strict):
        sys.stderr.write(f"meshc: the edited spec is not valid; {args.spec} was not changed\n")
        return EXIT_INVALID
    if args.dry_run:
        sys.stdout.write(edit.unified_diff())
    elif edit.changed:
        try:
            write_atomically(args.spec, edit.edited)
        except OSError as exc:
            raise MeshcError([error("E001", f"cannot write {args.spec}: {exc.strerror or exc}", None)],
                             EXIT_USAGE) from None
    _summarize(args, edit)
    return EXIT_OK


def _read_text(path: str) -> str:
    from meshc.load import read_spec_file

    data = read_spec_file(path).data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MeshcError([error("E002", f"{path} is not UTF-8 text (byte {exc.start})", None)], EXIT_INVALID) from None


def _summarize(args: argparse.Namespace, edit: object) -> None:
    from meshc.review.set_weights import WeightEdit

    assert isinstance(edit, WeightEdit)
    moves = ", ".join(f"{c.version} {'unset' if c.old is None else c.old} -> {c.new}"
                      for c in edit.changes if c.old != c.new)
    if args.format == "json":
        sys.stdout.write(json.dumps({
            "file": edit.path, "service": edit.service, "written": edit.changed and not args.dry_run,
            "changes": [{"version": c.version, "old": c.old, "new": c.new} for c in edit.changes],
        }, indent=2) + "\n")
    elif not edit.changed:
        current = " ".join(f"{c.version}={c.new}" for c in edit.changes)
        sys.stderr.write(f"meshc: {edit.service}: weights are already {current}; {edit.path} unchanged\n")
    else:
        verb = "would set" if args.dry_run else "set"
        sys.stderr.write(f"meshc: {edit.service}: {verb} {moves} in {edit.path}\n")
