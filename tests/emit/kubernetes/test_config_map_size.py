"""A sidecar's files against the ConfigMap size limit (1 MiB of data per ConfigMap).

A service calling hundreds of others gets its files written compactly (repeated blocks once, as
YAML anchors) and split over several ConfigMaps, projected into one volume: checked here by size,
and with a real Envoy reading the split, anchored files from a directory laid out the way the
kubelet lays out a projected volume. Beyond what even that layout holds, meshc reports E250 at the
service's line before anything is written.
"""

from __future__ import annotations

from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.fan_out import fan_out_spec
from meshc import render
from meshc.emit import naming
from meshc.emit.kubernetes.objects import CONFIG_MAP_MAX_BYTES
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, build_bundle, check, compile
from tests.emit.kubernetes.schemas import bundled_versions, errors
from tests.emit.kubernetes.test_config_map_reload import KubeletVolume, objects
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import LOOPBACK, free_ports
from tests.traffic.sidecars import CONFIG_DIR_TEMPLATE, Client, caller_spec, ports_named, source_of, spread, static_service

UPSTREAMS = 500


def hub_documents(spec: bytes) -> list[dict[str, Any]]:
    checked = check(SpecSource("mesh.yaml", spec))
    assert checked.ok, [str(d) for d in checked.diagnostics]
    bundle = build_bundle(checked)
    return list(yaml.load_all(bundle.files[naming.kubernetes_path("hub")], Loader=yaml.CSafeLoader))


def data_size(config_map: dict[str, Any]) -> int:
    return sum(len(key) + len(value.encode()) for key, value in config_map["data"].items())


def test_a_service_calling_500_others_fits_its_config_maps() -> None:
    documents = hub_documents(fan_out_spec(UPSTREAMS))
    config_maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
    assert set(config_maps) == {"hub-envoy", "hub-envoy-cds", "hub-envoy-lds"}
    assert all(data_size(c) <= CONFIG_MAP_MAX_BYTES for c in config_maps.values()), \
        {name: data_size(c) for name, c in config_maps.items()}
    # Together they carry every sidecar file once, each reading as the file meshc wrote to envoy/.
    files = {key: value for c in config_maps.values() for key, value in c["data"].items()}
    assert set(files) >= {naming.BOOTSTRAP_FILE, naming.CDS_FILE, naming.LDS_FILE}
    assert len(files) == sum(len(c["data"]) for c in config_maps.values())
    listeners = yaml.load(files[naming.LDS_FILE], Loader=yaml.CSafeLoader)["resources"]
    assert len(listeners) == UPSTREAMS + 1   # one per upstream, and the inbound one
    newest = bundled_versions()[-1]   # the defaults (native sidecars) need 1.29 or later
    for obj in documents:   # the projected volume, as every object, passes Kubernetes' own schemas
        assert errors(obj, newest) == [], obj["kind"]
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                      if v["name"] == naming.SIDECAR_CONFIG_VOLUME)
        assert [s["configMap"]["name"] for s in volume["projected"]["sources"]] == sorted(config_maps)


def test_a_small_sidecar_keeps_one_config_map_as_written() -> None:
    documents = hub_documents(fan_out_spec(3))
    config_maps = [d for d in documents if d["kind"] == "ConfigMap"]
    assert [c["metadata"]["name"] for c in config_maps] == ["hub-envoy"]
    lds = config_maps[0]["data"][naming.LDS_FILE]
    assert lds.startswith("{\n  ")   # the indented JSON of envoy/hub/lds.yaml, unchanged


def test_over_the_limit_even_when_split_is_an_error_at_the_service() -> None:
    checked = check(SpecSource("mesh.yaml", fan_out_spec(1300)))
    errors = [d for d in checked.diagnostics if d.is_error]
    assert [d.code for d in errors] == ["E250"]
    assert errors[0].span is not None and (errors[0].span.line, errors[0].span.col) == (7, 5)
    assert "hub" in errors[0].message and "1,048,576" in errors[0].message
    assert not checked.ok


def test_shared_rendering_reads_back_as_the_same_documents() -> None:
    repeated = {"name": "access", "format": {f"field{i}": f"%VALUE{i}%" for i in range(8)}}
    docs = [{"resources": [{"name": f"r{i}", "log": repeated, "tags": ["yes", "0.5s", "1"]} for i in range(5)]}]
    written = render.shared_file(render.file(docs))
    assert written.count(b"*s1") == 4   # the block is written once, then referred to
    assert list(yaml.load_all(written, Loader=yaml.CSafeLoader)) == docs


@pytest.mark.envoy
def test_envoy_serves_500_upstreams_from_split_anchored_config_maps(
        backend_pool: BackendPoolFactory, tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    pool = backend_pool(names=["a"])
    names = [f"s{i:03d}" for i in range(UPSTREAMS)]
    spec = caller_spec(static_service(names[0], [pool["a"].port]), access_log="json",
                       extra_services=[static_service(name, [pool["a"].port]) for name in names[1:]])
    ports = free_ports(UPSTREAMS - 1, avoid=ports_named(spec))
    spec["spec"]["services"][0]["upstreams"] += [{"service": name, "localPort": port}
                                                 for name, port in zip(names[1:], ports)]
    root = tmp_path / "volumes"
    built = objects(source_of(spec), root)
    config_maps = {name: obj for (kind, name), obj in built.items() if kind == "ConfigMap"}
    assert len(config_maps) == 3 and all(data_size(c) <= CONFIG_MAP_MAX_BYTES for c in config_maps.values())
    assert "*s1" in config_maps["client-envoy-lds"]["data"][naming.LDS_FILE]   # Envoy reads the aliases

    volume = KubeletVolume(root / "client")
    volume.write({key: value for c in config_maps.values() for key, value in c["data"].items()})
    sidecar = envoy_runner(root / "client" / naming.BOOTSTRAP_FILE, name="client", log_level="warning")
    sidecar.wait_for_listener(naming.outbound_listener_name(names[-1], ports[-1]), timeout=60)
    for port in (spec["spec"]["services"][0]["upstreams"][0]["localPort"], ports[len(ports) // 2], ports[-1]):
        assert spread(Client(port), 2) == {"a": 2}
    assert sidecar.stat("listener_manager.lds.update_rejected") == 0
    assert sidecar.stat("cluster_manager.cds.update_rejected") == 0


# -- gateways: the same layout for an ingress gateway routing to hundreds of services ------------

GATEWAY_ROUTES = 500


def gateway_spec(routes: int, port: int = 8443, mtls: str = "off") -> dict[str, Any]:
    """A gateway routing one path prefix to each of `routes` services."""
    names = [f"s{i:04d}" for i in range(routes)]
    return {
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "edge"},
        "spec": {"proxy": {"accessLog": "off"}, "security": {"mtls": mtls},
                 "services": [{"name": name, "image": f"{name}:1", "port": 8080} for name in names],
                 "gateways": [{"name": "public", "listeners": [{"port": port, "hosts": ["*"]}],
                               "routes": [{"match": {"path": {"prefix": f"/{name}/"}}, "service": name}
                                          for name in names]}]}}


def gateway_objects(spec: dict[str, Any], options: BuildOptions = BuildOptions()) -> dict[tuple[str, str], Any]:
    compiled = compile(source_of(spec), options)
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    path = naming.kubernetes_path(naming.gateway_name("public"))
    return {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.load_all(compiled.bundle.files[path], Loader=yaml.CSafeLoader)}


def test_a_gateway_routing_to_500_services_splits_its_config_maps() -> None:
    built = gateway_objects(gateway_spec(GATEWAY_ROUTES))
    config_maps = {name: obj for (kind, name), obj in built.items() if kind == "ConfigMap"}
    assert set(config_maps) == {"gateway-public-envoy", "gateway-public-envoy-cds", "gateway-public-envoy-lds"}
    assert all(data_size(c) <= CONFIG_MAP_MAX_BYTES for c in config_maps.values())
    deployment = built[("Deployment", "gateway-public")]
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == naming.SIDECAR_CONFIG_VOLUME)
    assert [s["configMap"]["name"] for s in volume["projected"]["sources"]] == sorted(config_maps)
    newest = bundled_versions()[-1]
    for obj in built.values():
        assert errors(obj, newest) == [], obj["kind"]


def test_a_small_gateway_keeps_one_config_map() -> None:
    built = gateway_objects(gateway_spec(2))
    assert [name for kind, name in built if kind == "ConfigMap"] == ["gateway-public-envoy"]
    deployment = built[("Deployment", "gateway-public")]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": naming.SIDECAR_CONFIG_VOLUME, "configMap": {"name": "gateway-public-envoy"}} in volumes


def test_a_gateway_over_the_limit_even_when_split_is_an_error_at_the_gateway() -> None:
    source = source_of(gateway_spec(1300, mtls="strict"))   # a TLS transport in each of its clusters
    checked = check(source)
    errors_found = [d for d in checked.diagnostics if d.is_error]
    assert [d.code for d in errors_found] == ["E250"]
    gateway_line = source.data.decode().splitlines().index("  gateways:") + 2   # `- name: public`
    assert errors_found[0].span is not None and errors_found[0].span.line == gateway_line
    assert "gateway 'public' (1300 routes)" in errors_found[0].message
    assert "gateway-public-envoy-cds" in errors_found[0].message


@pytest.mark.envoy
def test_envoy_gateway_serves_500_routes_from_split_anchored_config_maps(
        backend_pool: BackendPoolFactory, tmp_path: Path, envoy_runner: EnvoyRunner) -> None:
    pool = backend_pool(names=["a"])
    admin, inbound, stats, listen = free_ports(4)
    spec = gateway_spec(GATEWAY_ROUTES, listen)
    spec["spec"]["proxy"].update(adminPort=admin, inboundPort=inbound, statsPort=stats)
    root = tmp_path / "volumes"
    names = [s["name"] for s in spec["spec"]["services"]]
    options = BuildOptions(config_dir=str(root / CONFIG_DIR_TEMPLATE),
                           envoy_hosts={name: f"{LOOPBACK}:{pool['a'].port}" for name in names})
    built = gateway_objects(spec, options)
    config_maps = [obj for (kind, _), obj in built.items() if kind == "ConfigMap"]
    assert len(config_maps) == 3

    gateway = naming.gateway_name("public")
    KubeletVolume(root / gateway).write({key: value for c in config_maps for key, value in c["data"].items()})
    envoy = envoy_runner(root / gateway / naming.BOOTSTRAP_FILE, name=gateway, log_level="warning")
    envoy.wait_for_listener(f"{gateway}|{listen}", timeout=60)
    for name in (names[0], names[len(names) // 2], names[-1]):
        connection = HTTPConnection(LOOPBACK, listen, timeout=10)
        try:
            connection.request("GET", f"/{name}/x")
            response = connection.getresponse()
            response.read()
            assert (response.status, response.getheader("x-backend")) == (200, "a"), name
        finally:
            connection.close()
    assert envoy.stat("listener_manager.lds.update_rejected") == 0
    assert envoy.stat("cluster_manager.cds.update_rejected") == 0
