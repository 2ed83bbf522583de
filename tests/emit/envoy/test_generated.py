"""Specs nobody wrote by hand: a generated mesh with every tier, protocol and policy mix, each sidecar
accepted by real Envoy (the benchmark's generator, at a size a test can afford)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gen_mesh import generate
from meshc.load import SpecSource
from tests.support.envoy import validate_config, write_bootstrap
from tests.traffic.sidecars import envoy_files, install, mesh_of, static_bootstrap

SERVICES = 40


@pytest.mark.envoy
def test_every_sidecar_of_a_generated_mesh_is_accepted(tmp_path: Path) -> None:
    source = SpecSource("generated.yaml", generate(SERVICES, seed=7).encode())
    mesh = mesh_of(source)
    files = envoy_files(source, tmp_path)
    deployed = mesh.deployed_services
    assert len(deployed) >= SERVICES // 2 and any(not s.deployed for s in mesh.services)
    for service in deployed:
        install(files, service.name, tmp_path)   # validate mode wants the SDS files to exist
        path = write_bootstrap(static_bootstrap(files, service.name), tmp_path / f"{service.name}.json")
        result = validate_config(path)
        assert result.returncode == 0, f"{service.name}: {result.stderr}{result.stdout}"
