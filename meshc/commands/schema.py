"""`meshc schema`: the JSON Schema of mesh.yaml, generated from the models."""

from __future__ import annotations

import argparse
import json
import sys

from meshc.commands.common import EXIT_OK

NAME = "schema"
HELP = "print the JSON Schema of mesh.yaml (schemas/mesh.v1alpha1.json)"


def register(parser: argparse.ArgumentParser) -> None:
    del parser


def schema_text() -> str:
    from meshc.validate.models import json_schema

    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK
