"""Istio's Bookinfo networking samples, written as meshes (examples/bookinfo-routing/), on real traffic.

Each sample's routes run in the caller's sidecar (productpage calls reviews, reviews calls ratings),
started from the example file itself; every service version is a loopback backend naming itself.
Splits are held to 5 binomial standard deviations, the delay to a lower bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from meshc.emit import naming
from meshc.pipeline import BuildOptions, compile
from tests.support.backends import BackendPool
from tests.support.fixtures import BackendPoolFactory, EnvoyRunner
from tests.support.ports import LOOPBACK, free_ports
from tests.traffic.sidecars import (
    CONFIG_DIR_TEMPLATE,
    Client,
    binomial_margin,
    envoy_files,
    install,
    local_port,
    source_of,
    spread,
    with_free_ports,
)
from tests.traffic.test_gateway import install_gateway

pytestmark = pytest.mark.envoy

EXAMPLE = Path(__file__).parents[2] / "examples" / "bookinfo-routing"
BACKENDS = ["reviews-v1", "reviews-v2", "reviews-v3", "ratings", "details", "productpage"]
JASON = {"end-user": "jason"}


def sample(name: str) -> dict[str, Any]:
    """The example as written, with mTLS off: the loopback backends stand in for the callees'
    sidecars and speak plaintext (tests/traffic/test_gateway.py runs a gateway over mTLS)."""
    path = EXAMPLE / "samples" / f"{name}.yaml" if name != "mesh" else EXAMPLE / "mesh.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    loaded["spec"]["security"] = {"mtls": "off"}
    return loaded


def hosts(pool: BackendPool) -> dict[str, str]:
    return {b.name.replace("-", "/", 1) if b.name.startswith("reviews") else b.name: f"{LOOPBACK}:{b.port}"
            for b in pool}


class Caller(Protocol):
    def __call__(self, sample_name: str, caller: str, callee: str) -> Client: ...


@pytest.fixture
def bookinfo(backend_pool: BackendPoolFactory) -> BackendPool:
    return backend_pool(names=BACKENDS)


@pytest.fixture
def caller(bookinfo: BackendPool, envoy_runner: EnvoyRunner, tmp_path: Path) -> Iterator[Caller]:
    """`caller(sample, "productpage", "reviews")`: that caller's sidecar, and a client to that upstream."""
    clients: list[Client] = []

    def start(sample_name: str, caller_name: str, callee: str) -> Client:
        spec = with_free_ports(sample(sample_name))
        root = tmp_path / sample_name
        files = envoy_files(spec, root, hosts(bookinfo))
        sidecar = envoy_runner(install(files, caller_name, root), name=caller_name)
        index = [u["service"] for u in next(s for s in spec["spec"]["services"]
                                             if s["name"] == caller_name)["upstreams"]].index(callee)
        port = local_port(spec, caller_name, index)
        sidecar.wait_for_listener(naming.outbound_listener_name(callee, port))
        client = Client(port)
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize(("name", "version"), [
    ("virtual-service-all-v1", "reviews-v1"),
    ("virtual-service-reviews-v3", "reviews-v3"),
])
def test_all_to_one_version(caller: Caller, name: str, version: str) -> None:
    client = caller(name, "productpage", "reviews")
    assert spread(client, 20) == {version: 20}
    assert spread(client, 10, headers=JASON) == {version: 10}


@pytest.mark.parametrize(("name", "split"), [
    ("virtual-service-reviews-50-v3", {"reviews-v1": 0.5, "reviews-v3": 0.5}),
    ("virtual-service-reviews-80-20", {"reviews-v1": 0.8, "reviews-v2": 0.2}),
    ("virtual-service-reviews-90-10", {"reviews-v1": 0.9, "reviews-v2": 0.1}),
    ("virtual-service-reviews-v2-v3", {"reviews-v2": 0.5, "reviews-v3": 0.5}),
])
def test_weighted_splits(caller: Caller, name: str, split: dict[str, float]) -> None:
    client = caller(name, "productpage", "reviews")
    calls = 300
    seen = spread(client, calls)
    assert set(seen) == set(split), seen
    for version, share in split.items():
        assert abs(seen[version] - share * calls) <= binomial_margin(calls, share), seen


@pytest.mark.parametrize(("name", "others"), [
    ("virtual-service-reviews-test-v2", "reviews-v1"),
    ("virtual-service-reviews-jason-v2-v3", "reviews-v3"),
])
def test_jason_sees_v2(caller: Caller, name: str, others: str) -> None:
    client = caller(name, "productpage", "reviews")
    assert spread(client, 20, headers=JASON) == {"reviews-v2": 20}
    assert spread(client, 20, headers={"end-user": "someone"}) == {others: 20}
    assert spread(client, 20) == {others: 20}


def test_ratings_delay_for_jason(caller: Caller, bookinfo: BackendPool) -> None:
    client = caller("virtual-service-ratings-test-delay", "reviews", "ratings")
    answer = client.request("/ratings/0", JASON)
    assert answer.status == 200 and answer.backend == "ratings"
    assert answer.elapsed >= 6.99, answer.elapsed          # 7s, less a coarse timer's early ms
    quick = client.request("/ratings/0")
    assert quick.status == 200
    assert quick.elapsed < answer.elapsed


def test_ratings_abort_for_jason(caller: Caller, bookinfo: BackendPool) -> None:
    client = caller("virtual-service-ratings-test-abort", "reviews", "ratings")
    assert {client.request("/ratings/0", JASON).status for _ in range(20)} == {500}
    assert bookinfo["ratings"].hits == 0
    assert {client.request("/ratings/0").status for _ in range(20)} == {200}
    assert bookinfo["ratings"].hits == 20


def test_bookinfo_gateway_serves_the_product_page(bookinfo: BackendPool, envoy_runner: EnvoyRunner,
                                                  tmp_path: Path) -> None:
    spec = with_free_ports(sample("mesh"))
    (port,) = free_ports(1)
    spec["spec"]["gateways"][0]["listeners"][0]["port"] = port
    root = tmp_path / "config"
    compiled = compile(source_of(spec), BuildOptions(config_dir=str(root / CONFIG_DIR_TEMPLATE),
                                                     envoy_hosts=hosts(bookinfo)))
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    gateway = naming.gateway_name("bookinfo")
    envoy = envoy_runner(install_gateway(compiled.bundle.files, root, gateway), name=gateway)
    envoy.wait_for_listener(f"{gateway}|{port}")
    with Client(port) as client:
        for path in ("/productpage", "/static/style.css", "/login", "/api/v1/products/1"):
            answer = client.request(path, {"Host": "bookinfo.example.com"})
            assert (answer.status, answer.backend) == (200, "productpage"), path
        assert client.request("/productpage/extra").status == 404       # exact path
        assert client.request("/admin").status == 404
    served = [r.path for r in bookinfo["productpage"].requests if r.path != "/health"]   # the gateway health-checks it
    assert served == ["/productpage", "/static/style.css", "/login", "/api/v1/products/1"]
