"""Every example builds, and real Envoy 1.40 accepts every sidecar's bootstrap, clusters and listeners."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc.emit import envoy, naming
from meshc.load import read_spec_file
from meshc.pipeline import BuildOptions, compile
from tests.support.envoy import assert_valid, validate_config, write_bootstrap
from tests.support.fixtures import EnvoyRunner
from tests.traffic.sidecars import (
    envoy_files,
    issue_certificates,
    install,
    mesh_of,
    source_of,
    static_bootstrap,
    with_free_ports,
)

ROOT = Path(__file__).parents[3]
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/mesh.yaml"))


def example_spec(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name / "mesh.yaml").read_text())
    return loaded


def test_there_are_examples() -> None:
    assert {"shop", "canary", "external", "grpc"} <= set(EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_compiles_with_the_sidecar_files(example: str, tmp_path: Path) -> None:
    """The pipeline's bundle carries exactly what the Envoy emitter produced, for every deployed service."""
    source = read_spec_file(str(ROOT / "examples" / example / "mesh.yaml"))
    compiled = compile(source, BuildOptions(config_dir=str(tmp_path / "{service}")))
    assert compiled.bundle is not None, compiled.diagnostics
    mesh = mesh_of(source)
    sidecars = {path for path in compiled.bundle.files if path.startswith("envoy/")}
    gateways = {path for path in sidecars if path.split("/")[1] in {naming.gateway_name(g.name) for g in mesh.gateways}}
    assert sidecars - gateways == {naming.envoy_path(s.name, f) for s in mesh.deployed_services
                                   for f in (*naming.ENVOY_FILES, *(naming.SDS_FILES.values() if s.identity else ()))}
    assert {naming.envoy_path(s.name, "bootstrap.yaml") for s in mesh.services if not s.deployed}.isdisjoint(sidecars)
    expected = envoy_files(source, tmp_path)
    assert all(compiled.bundle.files[path] == data for path, data in expected.items())


@pytest.mark.envoy
@pytest.mark.parametrize("example", EXAMPLES)
def test_envoy_validates_every_sidecar_of_the_example(example: str, tmp_path: Path) -> None:
    source = read_spec_file(str(ROOT / "examples" / example / "mesh.yaml"))
    files = envoy_files(source, tmp_path)
    for service in mesh_of(source).deployed_services:
        bootstrap = install(files, service.name, tmp_path)
        assert_valid(bootstrap)   # paths must exist: validate mode checks them, but does not load them
        static = write_bootstrap(static_bootstrap(files, service.name), tmp_path / f"{service.name}-static.json")
        result = validate_config(static)
        assert result.returncode == 0, f"{service.name}: {result.stderr}{result.stdout}"
        assert "deprecated" not in (result.stderr + result.stdout).lower()


@pytest.mark.envoy
@pytest.mark.parametrize("example", EXAMPLES)
def test_real_envoy_loads_every_sidecar_of_the_example(example: str, tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    """File-based CDS/LDS accepted by a running Envoy: every cluster and listener present, nothing rejected."""
    spec = with_free_ports(example_spec(example))
    tls_root = issue_certificates(spec, tmp_path)
    files = envoy_files(spec, tmp_path, tls_root=tls_root)
    for service in mesh_of(source_of(spec)).deployed_services:
        sidecar = envoy_runner(install(files, service.name, tmp_path), name=service.name)
        cds = json.loads(files[naming.envoy_path(service.name, "cds.yaml")])
        lds = json.loads(files[naming.envoy_path(service.name, "lds.yaml")])
        stats = sidecar.stats(r"(cds|lds)\.update_(rejected|success)|deprecated_feature_use|unknown_fields|"
                              r"sds\..*update_rejected")
        assert not any(v for k, v in stats.items() if k.startswith("sds."))   # every certificate loaded
        assert stats["cluster_manager.cds.update_rejected"] == 0
        assert stats["listener_manager.lds.update_rejected"] == 0
        assert stats["cluster_manager.cds.update_success"] >= 1
        assert stats["listener_manager.lds.update_success"] >= 1
        assert stats.get("runtime.deprecated_feature_use", 0) == 0
        assert stats["server.dynamic_unknown_fields"] == 0 and stats["server.static_unknown_fields"] == 0
        dump = json.dumps(sidecar.config_dump())
        for resource in cds["resources"] + lds["resources"]:
            assert f'"name": "{resource["name"]}"' in dump
        listeners = sidecar.listener_ports()
        assert set(listeners) == {naming.STATS_LISTENER} | {r["name"] for r in lds["resources"]}
        assert sidecar.admin_url == f"http://127.0.0.1:{spec['spec']['proxy']['adminPort']}"
        sidecar.stop()


def test_output_is_deterministic(tmp_path: Path) -> None:
    for example in EXAMPLES:
        source = read_spec_file(str(ROOT / "examples" / example / "mesh.yaml"))
        assert envoy_files(source, tmp_path) == envoy_files(source, tmp_path)


@pytest.mark.parametrize("example", EXAMPLES)
def test_admin_binds_loopback_and_stats_listener_exposes_only_metrics_and_readiness(example: str) -> None:
    mesh = mesh_of(read_spec_file(str(ROOT / "examples" / example / "mesh.yaml")))
    for path, (bootstrap,) in envoy.emit(mesh, naming.DEFAULT_CONFIG_DIR).items():
        if not path.endswith("bootstrap.yaml"):
            continue
        assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                                   "port_value": mesh.proxy.admin_port}
        (stats,) = bootstrap["static_resources"]["listeners"]
        assert stats["address"]["socket_address"]["port_value"] == mesh.proxy.stats_port
        routes = stats["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        proxied = [r["match"]["path"] for r in routes if "route" in r]
        assert proxied == ["/stats/prometheus", "/ready"]
        assert routes[-1] == {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
        sources = bootstrap["dynamic_resources"]
        assert sources["cds_config"]["path_config_source"] == {
            "path": "/etc/envoy/cds.yaml", "watched_directory": {"path": "/etc/envoy"}}
        assert sources["lds_config"]["path_config_source"]["path"] == "/etc/envoy/lds.yaml"
        assert re.fullmatch(r"[a-z0-9-]+\.[a-z0-9-]+", bootstrap["node"]["id"])
