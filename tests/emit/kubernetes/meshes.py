"""Meshes for the Kubernetes emitter tests: the examples, small specs written inline, fake sidecars."""

from __future__ import annotations

import textwrap
from pathlib import Path

from meshc.emit import naming
from meshc.load import SpecSource, read_spec_file
from meshc.pipeline import Checked, check
from meshc.resolve import ir

ROOT = Path(__file__).parents[3]
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/mesh.yaml"))


def example_mesh(name: str) -> ir.Mesh:
    return _ok(check(read_spec_file(str(ROOT / "examples" / name / "mesh.yaml"))))


def mesh_from_yaml(text: str) -> ir.Mesh:
    return _ok(check(SpecSource("mesh.yaml", textwrap.dedent(text).encode())))


def _ok(checked: Checked) -> ir.Mesh:
    mesh = checked.mesh
    assert mesh is not None and checked.ok, [str(d) for d in checked.diagnostics]
    return mesh


def fake_sidecars(mesh: ir.Mesh, **overrides: bytes) -> dict[str, dict[str, bytes]]:
    """Distinct bytes per service and file; `overrides` replaces one file everywhere (`cds="..."`)."""
    files: dict[str, dict[str, bytes]] = {}
    for service in mesh.deployed_services:
        files[service.name] = {
            name: overrides.get(name.removesuffix(".yaml"), f'{{"service": "{service.name}", "file": "{name}"}}\n'.encode())
            for name in naming.ENVOY_FILES
        }
    for gateway in mesh.gateways:
        name = naming.gateway_name(gateway.name)
        files[name] = {file: f'{{"gateway": "{name}", "file": "{file}"}}\n'.encode() for file in naming.ENVOY_FILES}
    return files
