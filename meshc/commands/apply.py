"""`meshc apply [SPEC] [targets] [--dry-run]`: one sync: plan every target, then apply the plans.

Nothing is written unless the spec compiles and every target could be planned; prunes beyond
the guards are refused (exit 1, nothing written). Exit codes: 0 applied (or nothing to do),
1 invalid spec or a failed/refused sync, 2 usage or I/O.
"""

from __future__ import annotations

import argparse
import json
import sys

from meshc.commands.common import EXIT_INVALID, EXIT_OK, add_format_argument, add_spec_argument
from meshc.commands.sync_common import (
    add_build_arguments, add_prune_arguments, add_scope_argument, add_target_arguments, close_targets, open_targets,
    prepare, previous_meshes, remember, sync_failure, without_cycle_collection,
)

NAME = "apply"
HELP = "sync the compiled mesh to Kubernetes, etcd and/or a directory, changing only what differs"


def register(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_target_arguments(parser)
    add_prune_arguments(parser)
    add_build_arguments(parser)
    add_scope_argument(parser)
    add_format_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="plan only: print what would change, write nothing")


def run(args: argparse.Namespace) -> int:
    return without_cycle_collection(_run, args)


def _run(args: argparse.Namespace) -> int:
    from meshc.sync.engine import MeshRenameRefused, PruneRefused, sync_once
    from meshc.sync.output import notes_text, plan_summary, plan_text, report_json, report_summary, result_text
    from meshc.sync.target import SyncError

    targets = open_targets(args)
    try:
        prepared = prepare(args, targets)
        if prepared is None:
            return EXIT_INVALID
        bundle, previous = prepared.bundle, prepared.previous
        try:
            report = sync_once(bundle, targets, dry_run=args.dry_run, prune_limit=args.prune_limit,
                               allow_prune_all=args.allow_prune_all, allow_mesh_rename=args.allow_mesh_rename,
                               previous_meshes=previous_meshes(args, bundle, previous), previous=previous,
                               previous_revision=prepared.previous_revision)
        except PruneRefused as refused:
            if args.format == "text":
                sys.stdout.write(plan_text(refused.plans))
            what = "refusing to rename the mesh" if isinstance(refused, MeshRenameRefused) else "refusing to prune"
            for reason in refused.reasons:
                sys.stderr.write(f"meshc: error: {what}: {reason}\n")
            sys.stderr.write("meshc: nothing was written\n")
            return EXIT_INVALID
        except SyncError as error:
            if error.partial is not None and error.partial.applied and args.format == "text":
                sys.stdout.write(result_text([error.partial]))
            return sync_failure(error)
    finally:
        close_targets(targets)
    sys.stderr.write(notes_text(report.plans))
    if args.format == "json":
        sys.stdout.write(json.dumps(report_json(report), indent=2) + "\n")
    elif args.dry_run:
        sys.stdout.write(plan_text(report.plans))
        sys.stdout.write(f"dry run: {plan_summary(report.plans)}\n")
    else:
        sys.stdout.write(result_text(report.results))
        sys.stdout.write(report_summary(report) + "\n")
    sys.stdout.flush()
    remember(args, prepared, report)
    return EXIT_OK
