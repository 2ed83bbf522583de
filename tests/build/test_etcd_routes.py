"""etcd service records carry a service's request routes, rate limit and hash key as the spec says."""

from __future__ import annotations

import json
from pathlib import Path

from meshc.emit import etcd
from meshc.load import SpecSource, read_spec_file
from meshc.pipeline import check

ROOT = Path(__file__).parents[2]


def records(source: SpecSource) -> dict[str, dict[str, object]]:
    checked = check(source)
    assert checked.mesh is not None
    (seed,) = etcd.emit(checked.mesh)["etcd/seed.json"]
    return {key.rsplit("/", 1)[1]: json.loads(value) for key, value in seed["kvs"].items()}


def test_routes_and_rate_limit_in_the_record() -> None:
    found = records(read_spec_file(str(ROOT / "examples" / "bookinfo-routing" / "mesh.yaml")))
    (jason,) = found["reviews"]["routes"]   # type: ignore[misc]
    assert jason["name"] == "jason"
    assert jason["match"]["headers"] == {"end-user": {"exact": "jason"}}
    assert jason["versions"] == [{"name": "v2", "weight": 100}]
    (delay,) = found["ratings"]["routes"]   # type: ignore[misc]
    assert delay["fault"]["delay"] == {"duration": "7s", "percent": 100}
    assert delay["match"]["callers"] == ["reviews"]
    assert "routes" not in found["details"]


def test_cookie_hash_key_in_the_record() -> None:
    spec = b"""
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: m}
spec:
  services:
  - name: api
    image: api:1
    port: 8080
    rateLimit: {requests: 50}
    loadBalancer: {policy: ring_hash, hashOn: {cookie: {name: sid, ttl: 30m}}}
"""
    record = records(SpecSource("mesh.yaml", spec))["api"]
    assert record["loadBalancer"] == {"policy": "ring_hash", "hashOn": {"cookie": {"name": "sid", "path": None,
                                                                                   "ttl": "30m"}}}
    assert record["rateLimit"] == {"requests": 50, "per": "1s", "burst": 50}
