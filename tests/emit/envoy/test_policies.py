"""Each policy of mesh.yaml lands in the Envoy field DESIGN.md names, and Envoy accepts the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshc.emit.envoy.hosts import HostAddress, parse_host
from meshc.load import read_spec_file
from tests.support.envoy import validate_config, write_bootstrap
from tests.traffic.sidecars import (
    caller_spec,
    envoy_files,
    load,
    static_bootstrap,
    static_service,
)

ROOT = Path(__file__).parents[3]
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def example_files(name: str, tmp_path: Path) -> dict[str, bytes]:
    return envoy_files(read_spec_file(str(ROOT / "examples" / name / "mesh.yaml")), tmp_path)


def clusters(files: dict[str, bytes], service: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in load(files, service, "cds.yaml")["resources"]}


def listeners(files: dict[str, bytes], service: str) -> dict[str, dict[str, Any]]:
    return {li["name"]: li for li in load(files, service, "lds.yaml")["resources"]}


def network_filter(listener: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def route(listener: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = network_filter(listener)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    return action


def endpoints(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return found


def address(endpoint: dict[str, Any]) -> tuple[str, int]:
    socket = endpoint["endpoint"]["address"]["socket_address"]
    return socket["address"], socket["port_value"]


def assert_envoy_accepts(files: dict[str, bytes], service: str, tmp_path: Path) -> None:
    path = write_bootstrap(static_bootstrap(files, service), tmp_path / f"{service}-static.json")
    result = validate_config(path)
    assert result.returncode == 0, result.stderr + result.stdout


# --- the examples -----------------------------------------------------------------------------

def test_shop_frontend(tmp_path: Path) -> None:
    files = example_files("shop", tmp_path)
    cds, lds = clusters(files, "frontend"), listeners(files, "frontend")
    assert set(cds) == {"local_app", "catalog|v1", "catalog|v2", "payments"}
    v1 = cds["catalog|v1"]
    assert v1["type"] == "STRICT_DNS" and v1["lb_policy"] == "LEAST_REQUEST"
    assert address(endpoints(v1)[0]) == ("catalog-v1.shop.svc.cluster.local", 15006)   # the callee's sidecar inbound
    assert v1["outlier_detection"] | {} == {"consecutive_5xx": 5, "interval": "10s", "base_ejection_time": "30s",
                                            "max_ejection_percent": 50, "enforcing_success_rate": 0}
    threshold = v1["circuit_breakers"]["thresholds"][0]
    assert {k: threshold[k] for k in ("max_connections", "max_pending_requests", "max_requests", "max_retries")} == {
        "max_connections": 1024, "max_pending_requests": 256, "max_requests": 1024, "max_retries": 3}
    assert threshold["retry_budget"]["min_retry_concurrency"] == 3      # the route to catalog retries
    assert v1["connect_timeout"] == "1s"
    payments = cds["payments"]
    assert payments["type"] == "STATIC" and payments["lb_policy"] == "ROUND_ROBIN"   # weighted: never RANDOM
    assert [(address(e), e["load_balancing_weight"]) for e in endpoints(payments)] == [
        (("10.20.0.5", 8443), 3), (("10.20.0.6", 8443), 1)]
    # fail_fast: tiny pending queue, outlier detection on, no retries
    assert payments["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 1
    assert "retry_budget" not in payments["circuit_breakers"]["thresholds"][0]
    assert payments["outlier_detection"]["consecutive_5xx"] >= 1
    to_catalog = route(lds["outbound|9001|catalog"])
    assert to_catalog["weighted_clusters"] == {"clusters": [{"name": "catalog|v1", "weight": 90},
                                                            {"name": "catalog|v2", "weight": 10}]}
    assert to_catalog["timeout"] == "2s"
    retry = to_catalog["retry_policy"]
    assert (retry["num_retries"], retry["per_try_timeout"], retry["retry_on"]) == (3, "0.500s", "5xx,connect-failure,reset")
    assert retry["retry_back_off"] == {"base_interval": "0.050s", "max_interval": "0.500s"}
    to_payments = route(lds["outbound|9002|payments"])
    # payments has `tls`: callers' sidecars originate TLS and ask for it by its own name
    assert to_payments == {"cluster": "payments", "timeout": "15s", "host_rewrite_literal": "pay.example.net"}
    assert payments["transport_socket"]["typed_config"]["sni"] == "pay.example.net"
    assert lds["outbound|9002|payments"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9002}
    inbound = lds["inbound"]
    assert inbound["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15006}
    assert route(inbound) == {"cluster": "local_app", "timeout": "0s"}
    assert network_filter(inbound)["codec_type"] == "AUTO"
    assert address(endpoints(cds["local_app"])[0]) == ("127.0.0.1", 8080)


def test_shop_catalog_has_only_its_local_app(tmp_path: Path) -> None:
    files = example_files("shop", tmp_path)
    assert set(clusters(files, "catalog")) == {"local_app"}
    assert set(listeners(files, "catalog")) == {"inbound"}
    assert "envoy/payments/bootstrap.yaml" not in files      # static endpoints: no sidecar


def test_grpc_hash_policies_and_http2(tmp_path: Path) -> None:
    files = example_files("grpc", tmp_path)
    cds, lds = clusters(files, "gateway"), listeners(files, "gateway")
    store, recommender = cds["session-store"], cds["recommender"]
    assert store["lb_policy"] == "RING_HASH" and recommender["lb_policy"] == "MAGLEV"
    assert route(lds["outbound|50051|session-store"])["hash_policy"] == [{"header": {"header_name": "x-user-id"}}]
    assert route(lds["outbound|50052|recommender"])["hash_policy"] == [{"connection_properties": {"source_ip": True}}]
    for cluster in (store, recommender):
        options = cluster["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS]
        assert options["explicit_http_config"] == {"http2_protocol_options": {}}
    health = store["health_checks"][0]
    assert "grpc_health_check" in health and (health["interval"], health["timeout"]) == ("5s", "1s")
    assert "typed_extension_protocol_options" in clusters(files, "session-store")["local_app"]   # app speaks h2


def test_canary_three_way_split_and_health_checks(tmp_path: Path) -> None:
    files = example_files("canary", tmp_path)
    to_checkout = route(listeners(files, "web")["outbound|7001|checkout"])
    assert to_checkout["weighted_clusters"]["clusters"] == [
        {"name": "checkout|canary", "weight": 15}, {"name": "checkout|next", "weight": 5},
        {"name": "checkout|stable", "weight": 80}]
    stable = clusters(files, "web")["checkout|stable"]
    assert stable["health_checks"][0]["http_health_check"] == {"path": "/healthz", "host": "checkout"}
    assert stable["connect_timeout"] == "0.500s"
    assert listeners(files, "web")["inbound"]["filter_chains"][0]["filters"][0]["typed_config"]["access_log"]


def test_external_static_and_dns_endpoints(tmp_path: Path) -> None:
    files = example_files("external", tmp_path)
    cds = clusters(files, "invoices")
    card, ledger = cds["card-processor"], cds["ledger"]
    assert card["type"] == "STATIC" and [e["load_balancing_weight"] for e in endpoints(card)] == [5, 3, 1]
    assert card["circuit_breakers"]["thresholds"][0]["max_retries"] == 0
    assert ledger["type"] == "STRICT_DNS"
    assert [address(e) for e in endpoints(ledger)] == [("ledger-a.corp.example.com", 8080),
                                                       ("ledger-b.corp.example.com", 8080)]
    assert ledger["health_checks"][0]["http_health_check"]["path"] == "/ping"
    assert "retry_policy" not in route(listeners(files, "invoices")["outbound|9100|card-processor"])
    assert route(listeners(files, "invoices")["outbound|9101|ledger"])["retry_policy"]["retry_on"] == \
        "connect-failure,reset"


# --- shapes the examples do not cover -----------------------------------------------------------

@pytest.mark.envoy
@pytest.mark.parametrize("policy", ["random", "round_robin", "least_request"])
def test_plain_lb_policies(policy: str, tmp_path: Path) -> None:
    spec = caller_spec(static_service("api", [8001, 8002], loadBalancer=policy))
    files = envoy_files(spec, tmp_path)
    assert clusters(files, "client")["api"]["lb_policy"] == policy.upper()
    assert_envoy_accepts(files, "client", tmp_path)


@pytest.mark.envoy
def test_tcp_upstream_uses_tcp_proxy_with_version_split(tmp_path: Path) -> None:
    db = {"name": "db", "port": 5432, "protocol": "tcp", "healthCheck": {"path": "/"},
          "loadBalancer": {"policy": "maglev", "hashOn": {"sourceIp": True}},
          "versions": [{"name": "a", "image": "db:1", "weight": 70}, {"name": "b", "image": "db:2", "weight": 30}]}
    spec = caller_spec(db, access_log="json")
    files = envoy_files(spec, tmp_path)
    proxy = network_filter(listeners(files, "client")["outbound|" + str(spec["spec"]["services"][0]["upstreams"][0]
                                                                         ["localPort"]) + "|db"])
    assert proxy["@type"].endswith("tcp_proxy.v3.TcpProxy")
    assert proxy["weighted_clusters"]["clusters"] == [{"name": "db|a", "weight": 70}, {"name": "db|b", "weight": 30}]
    assert proxy["hash_policy"] == [{"source_ip": {}}]
    assert proxy["access_log"][0]["typed_config"]["log_format"]["json_format"]["upstream_host"] == "%UPSTREAM_HOST%"
    assert clusters(files, "client")["db|a"]["health_checks"][0]["tcp_health_check"] == {}
    assert network_filter(listeners(files, "db")["inbound"])["cluster"] == "local_app"
    assert_envoy_accepts(files, "client", tmp_path)
    assert_envoy_accepts(files, "db", tmp_path)


@pytest.mark.envoy
def test_http2_upstream_and_zero_weight_version(tmp_path: Path) -> None:
    api = {"name": "api", "port": 9000, "protocol": "http2", "healthCheck": {"path": "/health"},
           "versions": [{"name": "v1", "image": "api:1", "weight": 100}, {"name": "v2", "image": "api:2", "weight": 0}]}
    files = envoy_files(caller_spec(api, {"timeout": "3s"}), tmp_path)
    v1 = clusters(files, "client")["api|v1"]
    assert "api|v2" in clusters(files, "client")           # warm, ready for the next weight change
    to_api = [route(li) for li in listeners(files, "client").values() if li["name"] != "inbound"]
    assert [r["cluster"] for r in to_api] == ["api|v1"] and "weighted_clusters" not in to_api[0]
    assert v1["health_checks"][0]["http_health_check"]["codec_client_type"] == "HTTP2"
    assert HTTP_PROTOCOL_OPTIONS in v1["typed_extension_protocol_options"]
    assert_envoy_accepts(files, "client", tmp_path)
    assert_envoy_accepts(files, "api", tmp_path)


@pytest.mark.envoy
def test_tcp_split_leaves_out_versions_at_weight_zero(tmp_path: Path) -> None:
    db = {"name": "db", "port": 5432, "protocol": "tcp",
          "versions": [{"name": "a", "image": "db:1", "weight": 60}, {"name": "b", "image": "db:2", "weight": 40},
                       {"name": "c", "image": "db:3", "weight": 0}]}
    files = envoy_files(caller_spec(db), tmp_path)
    (proxy,) = [network_filter(li) for li in listeners(files, "client").values() if li["name"] != "inbound"]
    assert proxy["weighted_clusters"]["clusters"] == [{"name": "db|a", "weight": 60}, {"name": "db|b", "weight": 40}]
    assert {"db|a", "db|b", "db|c"} <= set(clusters(files, "client"))
    assert_envoy_accepts(files, "client", tmp_path)


@pytest.mark.envoy
@pytest.mark.parametrize("callee", [
    static_service("api", [8001], outlierDetection={"consecutive5xx": 2, "consecutiveGatewayFailure": 3,
                                                    "maxEjectionPercent": 0},
                   circuitBreaker={"maxConnections": 1, "maxPendingRequests": 0, "maxRequests": 1, "maxRetries": 0}),
    {"name": "ext", "port": 443, "loadBalancer": {"policy": "maglev", "hashOn": {"sourceIp": True}},
     "endpoints": [{"address": "a.example.com", "port": 443, "weight": 2}, {"address": "10.0.0.1", "port": 443}]},
    {"name": "g", "port": 9000, "protocol": "grpc", "healthCheck": {"path": "/x"}, "circuitBreaker": {"maxRetries": 5},
     "versions": [{"name": "a", "image": "g:1", "weight": 50}, {"name": "b", "image": "g:2", "weight": 50}]},
    {"name": "db", "port": 5432, "protocol": "tcp", "image": "db:1",
     "loadBalancer": {"policy": "ring_hash", "hashOn": {"header": "x"}}},
], ids=["gateway-failure-and-tight-breaker", "dns-and-ip-endpoints-maglev", "grpc-versions", "tcp-header-hash"])
def test_more_shapes_are_accepted(callee: dict[str, Any], tmp_path: Path) -> None:
    files = envoy_files(caller_spec(callee), tmp_path)
    for service in {path.split("/")[1] for path in files}:
        assert_envoy_accepts(files, service, tmp_path)


@pytest.mark.envoy
def test_one_service_called_both_fail_fast_and_with_retries_gets_two_cluster_copies(tmp_path: Path) -> None:
    spec = caller_spec(static_service("api", [8001]), {"failurePolicy": "fail_fast"})
    client = spec["spec"]["services"][0]
    client["upstreams"].append({"service": "api", "localPort": client["upstreams"][0]["localPort"] + 1,
                                "retries": {"attempts": 2}})
    files = envoy_files(spec, tmp_path)
    cds = clusters(files, "client")
    assert set(cds) == {"local_app", "api", "api|fail_fast"}
    assert cds["api|fail_fast"]["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 1
    assert "retry_budget" in cds["api"]["circuit_breakers"]["thresholds"][0]
    routes = sorted((route(li).get("cluster"), "retry_policy" in route(li))
                    for li in listeners(files, "client").values() if li["name"] != "inbound")
    assert routes == [("api", True), ("api|fail_fast", False)]
    assert_envoy_accepts(files, "client", tmp_path)


@pytest.mark.envoy
def test_hosts_option_points_callers_at_sidecars_outside_kubernetes(tmp_path: Path) -> None:
    api = {"name": "api", "port": 9000, "versions": [{"name": "v1", "image": "api:1", "weight": 50},
                                                     {"name": "v2", "image": "api:2", "weight": 50}]}
    spec = caller_spec(api)
    files = envoy_files(spec, tmp_path, hosts={"api": "vm-7.corp.example", "api/v2": "10.1.2.3:17000"})
    cds = clusters(files, "client")
    inbound = spec["spec"]["proxy"]["inboundPort"]
    assert (cds["api|v1"]["type"], address(endpoints(cds["api|v1"])[0])) == ("STRICT_DNS", ("vm-7.corp.example", inbound))
    assert (cds["api|v2"]["type"], address(endpoints(cds["api|v2"])[0])) == ("STATIC", ("10.1.2.3", 17000))
    boot = load(files, "client", "bootstrap.yaml")
    assert boot["dynamic_resources"]["lds_config"]["path_config_source"]["watched_directory"] == {
        "path": str(tmp_path / "client")}
    assert_envoy_accepts(files, "client", tmp_path)


def test_access_log_off_leaves_no_logger(tmp_path: Path) -> None:
    files = envoy_files(caller_spec(static_service("api", [8001]), access_log="off"), tmp_path)
    assert "access_log" not in json.dumps(load(files, "client", "lds.yaml"))


def test_version_info_is_the_content_hash(tmp_path: Path) -> None:
    a = envoy_files(caller_spec(static_service("api", [8001])), tmp_path)
    cds = load(a, "client", "cds.yaml")
    assert len(cds["version_info"]) == 16
    assert cds["type_url"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert all(r["@type"] == cds["type_url"] for r in cds["resources"])


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.7", HostAddress("10.0.0.7", None)),
    ("10.0.0.7:15006", HostAddress("10.0.0.7", 15006)),
    ("vm-3.corp:15006", HostAddress("vm-3.corp", 15006)),
    ("[fd00::7]:15006", HostAddress("fd00::7", 15006)),
    ("fd00::7", HostAddress("fd00::7", None)),
])
def test_parse_host(text: str, expected: HostAddress) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize("text", ["", "a b", "host:0", "host:70000", "host:x", "[::1]x", "a/b"])
def test_parse_host_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host(text)
