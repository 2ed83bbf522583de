"""`meshc graph [SPEC] [--format mermaid|dot]`: the call graph with policies on its edges."""

from __future__ import annotations

import argparse
import sys

from meshc.commands.common import EXIT_INVALID, EXIT_OK, add_spec_argument, read_source, report

NAME = "graph"
HELP = "print the call graph (Mermaid or Graphviz DOT) with timeouts, retries and splits on its edges"


def register(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    parser.add_argument("--format", choices=("mermaid", "dot"), default="mermaid",
                        help="mermaid (GitHub renders it in Markdown) or dot (Graphviz); default mermaid")
    parser.add_argument("--view", choices=("calls", "access"), default="calls",
                        help="calls: the call graph with its policies (default); access: the authorization "
                        "picture, who may call whom and in which mTLS mode")


def run(args: argparse.Namespace) -> int:
    from meshc.pipeline import check
    from meshc.review.graph import call_graph, render

    checked = check(read_source(args))
    if not checked.ok or checked.mesh is None:
        report([d for d in checked.diagnostics if d.is_error], argparse.Namespace(format="text"))
        sys.stderr.write("meshc: the spec is not valid; no graph\n")
        return EXIT_INVALID
    if args.view == "access":
        from meshc.review.access import authorization_graph

        sys.stdout.write(render(authorization_graph(checked.mesh), args.format))
    else:
        sys.stdout.write(render(call_graph(checked.mesh), args.format))
    return EXIT_OK
