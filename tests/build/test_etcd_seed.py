"""OUT/etcd/seed.json: one key per service under the prefix, sorted, values compact JSON records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshc import render
from meshc.emit import naming
from meshc.load import read_spec_file
from meshc.pipeline import check
from tests.build.tree import compiled

RECORD_FIELDS = {"name", "namespace", "port", "protocol", "deployed", "versions", "loadBalancer", "connectTimeout",
                 "endpoints", "healthCheck", "outlierDetection", "circuitBreaker", "upstreams", "configHash"}
UPSTREAM_FIELDS = {"service", "localPort", "timeout", "failurePolicy", "retries", "outlierDetection", "circuitBreaker"}


def seed_of(spec: Path) -> tuple[bytes, dict[str, Any]]:
    raw = compiled(spec).files[naming.ETCD_SEED_PATH]
    return raw, json.loads(raw)


@pytest.mark.parametrize("name", ["shop", "canary", "external", "grpc", "synthetic"])
def test_one_sorted_key_per_service_under_the_prefix(spec_paths: dict[str, Path], name: str) -> None:
    mesh = check(read_spec_file(str(spec_paths[name]))).mesh
    assert mesh is not None
    raw, seed = seed_of(spec_paths[name])
    assert seed["prefix"] == mesh.etcd_prefix
    keys_in_file_order = list(json.loads(raw, object_pairs_hook=lambda pairs: dict(pairs))["kvs"])
    expected = [f"{mesh.etcd_prefix}/services/{s.name}" for s in mesh.services]
    assert keys_in_file_order == sorted(expected)
    assert set(seed) == {"prefix", "kvs"}


@pytest.mark.parametrize("name", ["shop", "canary", "external", "grpc", "synthetic"])
def test_values_are_compact_json_records_with_a_correct_hash(spec_paths: dict[str, Path], name: str) -> None:
    _, seed = seed_of(spec_paths[name])
    for key, value in seed["kvs"].items():
        assert isinstance(value, str)
        record = json.loads(value)
        assert value == json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        deployed = not record["endpoints"]
        assert set(record) == RECORD_FIELDS | ({"security"} if deployed else set())   # the examples use mTLS
        assert key.endswith("/services/" + record["name"])
        assert all(set(u) == UPSTREAM_FIELDS for u in record["upstreams"])
        without = {k: v for k, v in record.items() if k != "configHash"}
        assert record["configHash"] == render.content_hash(without)


def test_a_client_only_service_has_no_port_in_its_record(spec_paths: dict[str, Path]) -> None:
    """boutique's loadgenerator only calls out: nothing reaches it, so its record names no port;
    every other record's port is an integer."""
    records = {json.loads(v)["name"]: json.loads(v) for v in seed_of(spec_paths["boutique"])[1]["kvs"].values()}
    assert "port" not in records["loadgenerator"] and records["loadgenerator"]["deployed"] is True
    assert set(records["loadgenerator"]) == RECORD_FIELDS - {"port"} | {"security"}
    assert all(isinstance(r["port"], int) for name, r in records.items() if name != "loadgenerator")


def test_prefixes_default_to_the_mesh_name_or_follow_the_spec(spec_paths: dict[str, Path]) -> None:
    assert seed_of(spec_paths["shop"])[1]["prefix"] == "/meshc/shop"
    assert seed_of(spec_paths["canary"])[1]["prefix"] == "/meshc/storefront"
    assert seed_of(spec_paths["external"])[1]["prefix"] == "/mesh/billing"


def test_records_say_what_the_spec_says(spec_paths: dict[str, Path]) -> None:
    kvs = seed_of(spec_paths["shop"])[1]["kvs"]
    catalog = json.loads(kvs["/meshc/shop/services/catalog"])
    assert catalog["security"] == {"mtls": "strict", "identity": "spiffe://cluster.local/ns/shop/sa/catalog",
                                   "allowedCallers": ["spiffe://cluster.local/ns/shop/sa/frontend"]}
    assert [(v["name"], v["weight"]) for v in catalog["versions"]] == [("v1", 90), ("v2", 10)]
    assert catalog["loadBalancer"] == {"policy": "least_request", "hashOn": None}
    assert (catalog["namespace"], catalog["port"], catalog["protocol"]) == ("shop", 9090, "http")
    payments = json.loads(kvs["/meshc/shop/services/payments"])
    assert payments["deployed"] is False and payments["versions"] == []
    assert payments["endpoints"] == [{"address": "10.20.0.5", "port": 8443, "weight": 3},
                                     {"address": "10.20.0.6", "port": 8443, "weight": 1}]
    frontend = json.loads(kvs["/meshc/shop/services/frontend"])
    to_catalog, to_payments = frontend["upstreams"]
    assert (to_catalog["service"], to_catalog["localPort"], to_catalog["timeout"]) == ("catalog", 9001, "2s")
    assert to_catalog["retries"]["attempts"] == 3 and to_catalog["retries"]["perTryTimeout"] == "500ms"
    assert to_payments["failurePolicy"] == "fail_fast" and to_payments["retries"] is None
    sticky = json.loads(seed_of(spec_paths["grpc"])[1]["kvs"]["/meshc/sessions/services/session-store"])
    assert sticky["loadBalancer"] == {"policy": "ring_hash", "hashOn": {"header": "x-user-id"}}


def test_a_change_to_one_service_changes_only_its_record(spec_paths: dict[str, Path], tmp_path: Path) -> None:
    changed = tmp_path / "mesh.yaml"
    changed.write_text(spec_paths["shop"].read_text().replace("catalog:2.0.0", "catalog:2.0.1"))
    before, after = seed_of(spec_paths["shop"])[1]["kvs"], seed_of(changed)[1]["kvs"]
    assert [k for k in before if before[k] != after[k]] == ["/meshc/shop/services/catalog"]
