"""Routes take part in the call-graph analysis: a route's own retries count towards amplification."""

from __future__ import annotations

from meshc.analysis import amplification
from meshc.load import SpecSource
from meshc.pipeline import check

SPEC = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: amp}
spec:
  analysis: {maxRetryAmplification: 3}
  services:
  - name: web
    image: web:1
    port: 8080
    upstreams: [{service: api, localPort: 9001, retries: {attempts: 1}}]
  - name: api
    image: api:1
    port: 8080
    routes:
    - name: patient
      match: {path: {prefix: /slow}}
      retries: {attempts: 4}
"""


def test_route_retries_raise_the_worst_case() -> None:
    checked = check(SpecSource("mesh.yaml", SPEC.encode()))
    assert checked.mesh is not None
    assert amplification(checked.mesh)["api"].factor == 5
    assert [d.code for d in checked.diagnostics] == ["W301"]
    assert checked.mesh.service("web").upstreams[0].routes[0].retries.attempts == 4   # type: ignore[union-attr]


def test_a_service_behind_a_gateway_counts_as_called() -> None:
    spec = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: edge}
spec:
  analysis: {entryPoints: []}
  services:
  - {name: web, image: web:1, port: 8080}
  - {name: admin, image: admin:1, port: 8080}
  gateways:
  - name: public
    listeners: [{port: 80, hosts: ["*"]}]
    routes: [{service: web}]
"""
    checked = check(SpecSource("mesh.yaml", spec.encode()))
    # web is reached through the gateway: neither uncalled (W304) nor without allowed callers (W501)
    assert {(d.code, d.message.split("'")[1]) for d in checked.diagnostics} == {("W304", "admin"), ("W501", "admin")}


def test_route_timeout_too_short_for_its_retries_warns_once() -> None:
    spec = SPEC.replace("      retries: {attempts: 4}", "      timeout: 1s\n      retries: {attempts: 4, perTryTimeout: 500ms}") \
        .replace("analysis: {maxRetryAmplification: 3}", "analysis: {maxRetryAmplification: 10}")
    checked = check(SpecSource("mesh.yaml", spec.encode()))
    assert [d.code for d in checked.diagnostics] == ["W201"]
    assert "route patient" in checked.diagnostics[0].message and "5 tries x perTryTimeout 500ms" in \
        checked.diagnostics[0].message
