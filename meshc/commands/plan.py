"""`meshc plan [SPEC] [targets]`: what `apply` would change on each target; changes nothing.

Exit codes: 0 (the plan was made), 1 (the spec does not compile, or a target failed), 2 (usage or
I/O). With --detailed-exitcode: 0 means no content would change and 3 that changes are pending
(a new commit's revision record alone is not a pending change).
"""

from __future__ import annotations

import argparse
import json
import sys

from meshc.commands.common import EXIT_INVALID, EXIT_OK, add_format_argument, add_spec_argument
from meshc.commands.sync_common import (
    EXIT_CHANGES, add_build_arguments, add_prune_arguments, add_scope_argument, add_target_arguments, close_targets,
    open_targets, prepare, previous_meshes, remember, sync_failure, without_cycle_collection,
)

NAME = "plan"
HELP = "show what apply would change on each target (Kubernetes, etcd, a directory)"


def register(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    add_target_arguments(parser)
    add_prune_arguments(parser)
    add_build_arguments(parser)
    add_scope_argument(parser)
    add_format_argument(parser)
    parser.add_argument("--show-unchanged", action="store_true", help="list unchanged objects too")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help=f"exit {EXIT_CHANGES} when changes are pending, 0 when there are none")


def run(args: argparse.Namespace) -> int:
    return without_cycle_collection(_run, args)


def _run(args: argparse.Namespace) -> int:
    from meshc.sync.engine import plan_sync
    from meshc.sync.output import plan_summary, plan_text, plans_json, content_would_change
    from meshc.sync.target import SyncError

    targets = open_targets(args)
    try:
        prepared = prepare(args, targets)
        if prepared is None:
            return EXIT_INVALID
        bundle, previous = prepared.bundle, prepared.previous
        try:
            planned = plan_sync(bundle, targets, previous=previous, previous_revision=prepared.previous_revision,
                                previous_meshes=previous_meshes(args, bundle, previous))
        except SyncError as error:
            return sync_failure(error)
    finally:
        close_targets(targets)
    plans = planned.all_plans
    refusals = planned.refusals(prune_limit=args.prune_limit, allow_prune_all=args.allow_prune_all,
                                allow_mesh_rename=args.allow_mesh_rename)
    if args.format == "json":
        document = plans_json(plans, show_unchanged=args.show_unchanged) | {"refusals": refusals}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(plan_text(plans, show_unchanged=args.show_unchanged))
        sys.stdout.write(plan_summary(plans) + "\n")
        for reason in refusals:
            sys.stderr.write(f"meshc: warning: apply would refuse: {reason}\n")
    sys.stdout.flush()
    remember(args, prepared, planned)    # the commit `apply` is likely to be given next
    if args.detailed_exitcode and content_would_change(plans):
        return EXIT_CHANGES
    return EXIT_OK
