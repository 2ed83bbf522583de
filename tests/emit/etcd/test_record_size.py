"""etcd records against etcd's request size limit: E251 at validate time, and the limit itself
checked against a real etcd (one record under it is written, one over it is refused)."""

from __future__ import annotations

import pytest
from etcd3gw.exceptions import Etcd3Exception

from meshc.emit import etcd, naming
from meshc.load import SpecSource
from meshc.pipeline import check
from meshc.resolve import ir
from tests.support.etcd import EtcdServer


def external_service_spec(endpoints: int) -> bytes:
    """`web` calling `legacy-db`, an external service with this many static endpoints."""
    lines = ["apiVersion: meshc.dev/v1alpha1", "kind: Mesh", "metadata:", "  name: demo", "spec:", "  services:",
             "  - name: web", "    image: ghcr.io/acme/web:1.0.0", "    port: 8080", "    upstreams:",
             "    - service: legacy-db", "      localPort: 9001",
             "  - name: legacy-db", "    port: 5432", "    protocol: tcp", "    endpoints:"]
    lines += [f"    - {{address: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}, port: 5432}}" for i in range(endpoints)]
    return ("\n".join(lines) + "\n").encode()


def _unchecked_mesh(endpoints: int) -> ir.Mesh:
    """The IR of the spec with the size checks off (web's ConfigMap is over the limit, E250)."""
    from meshc import pipeline

    limit = pipeline.SIZE_CHECK_FROM_ENTRIES, pipeline.SIZE_CHECK_FROM_UPSTREAMS
    pipeline.SIZE_CHECK_FROM_ENTRIES = pipeline.SIZE_CHECK_FROM_UPSTREAMS = 1 << 30
    try:
        mesh = check(SpecSource("mesh.yaml", external_service_spec(endpoints))).mesh
    finally:
        pipeline.SIZE_CHECK_FROM_ENTRIES, pipeline.SIZE_CHECK_FROM_UPSTREAMS = limit
    assert mesh is not None
    return mesh


def _service(mesh: ir.Mesh) -> ir.Service:
    return next(s for s in mesh.services if s.name == "legacy-db")


def test_a_record_over_the_request_limit_is_an_error_at_its_service() -> None:
    checked = check(SpecSource("mesh.yaml", external_service_spec(40_000)))
    errors = {d.code: d for d in checked.diagnostics if d.is_error}
    assert "E251" in errors and not checked.ok
    span = errors["E251"].span
    assert span is not None and (span.line, span.col) == (13, 5)
    assert "'legacy-db'" in errors["E251"].message and "1,048,576" in errors["E251"].message


def test_records_of_ordinary_services_are_not_measured_or_refused() -> None:
    checked = check(SpecSource("mesh.yaml", external_service_spec(500)))
    assert checked.ok, [str(d) for d in checked.diagnostics]


@pytest.mark.etcd
def test_what_meshc_accepts_etcd_writes_and_what_etcd_refuses_meshc_refuses(etcd_server: EtcdServer) -> None:
    """Just under meshc's limit (one transaction's budget) the record is accepted and etcd writes
    it; just over it meshc refuses; past etcd's own --max-request-bytes, etcd refuses it too."""
    checked = check(SpecSource("mesh.yaml", external_service_spec(19_000)))
    assert "E251" not in {d.code for d in checked.diagnostics}
    mesh = _unchecked_mesh(19_000)
    under = _service(mesh)
    assert 900_000 < etcd.record_size(mesh, under) <= etcd.MAX_RECORD_BYTES
    assert "E251" in {d.code for d in check(SpecSource("mesh.yaml", external_service_spec(21_000))).diagnostics}
    over_mesh = _unchecked_mesh(31_000)
    over = _service(over_mesh)
    assert etcd.record_size(over_mesh, over) > etcd.MAX_REQUEST_BYTES

    client = etcd_server.client(timeout=30)
    for written_mesh, service in ((mesh, under), (over_mesh, over)):
        kvs = etcd.emit(written_mesh)[naming.ETCD_SEED_PATH][0]["kvs"]
        key = naming.etcd_service_key(written_mesh.etcd_prefix, service.name)
        if service is under:
            assert client.put(key, kvs[key])
            assert client.get(key)[0].decode() == kvs[key]
        else:
            with pytest.raises(Etcd3Exception) as refused:
                client.put(key, kvs[key])
            assert "too large" in str(refused.value.detail_text)
