"""Kubernetes quantities as apimachinery's resource.ParseQuantity reads them: the spec takes every
form Kubernetes takes (and numbers as YAML reads them), compares requests with limits by the value
the API server keeps, and writes manifests the strict schemas accept."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshc.load import SpecSource
from meshc.emit import naming
from meshc.pipeline import check
from meshc.quantities import MAX_VALUE, canonical_quantity, is_quantity, parse_quantity
from tests.emit.kubernetes import schemas
from tests.emit.kubernetes.test_schemas import build, for_version

READ = [   # text, the value Kubernetes keeps
    ("1e9", "1000000000"), ("1E3", "1000"), ("1e+3", "1000"), ("5e-3", "0.005"), (".5", "0.5"), ("5.", "5"),
    ("+1", "1"), ("0", "0"), ("007", "7"), ("250m", "0.25"), ("100n", "0.0000001"), ("3u", "0.000003"),
    ("1k", "1000"), ("1E", "1000000000000000000"), ("1.5Gi", "1610612736"), (".5Ki", "512"), ("1.Ki", "1024"),
    ("128Mi", "134217728"), ("-1", "-1"),
    ("1e-10", "0.000000001"), ("0.1n", "0.000000001"),                 # rounded up to a nano unit
    ("1e30", str(MAX_VALUE)), ("16Ei", str(MAX_VALUE)),               # capped at 2^63-1
    ("123456789012345678901234567890123456789Ki", str(MAX_VALUE)),
]
REFUSED = ["", " 1", "1 ", "1\n", "1e", "1e3m", "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "1K",
           "1ki", "-3.01e-", "1e1.5", "1Gb", "1GiB", ".", "-", "1e99999999999999999999"]


@pytest.mark.parametrize(("text", "value"), READ)
def test_the_value_kubernetes_keeps(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


# apimachinery's own cases (quantity_test.go: TestQuantityString, TestQuantityParseEmit) of the
# DecimalSI form, the one a quantity spelled without a suffix keeps.
CANONICAL = [("1080n", "1080n"), ("108e-8", "1080n"), ("10800e-10", "1080n"), ("1080e-6", "1080u"), ("80e-6", "80u"),
             ("3e3", "3k"), ("1000M", "1G"), ("0", "0"), ("1n", "1n"), ("1e-6", "1u")]


@pytest.mark.parametrize(("text", "written"), CANONICAL)
def test_the_canonical_form_is_apimachinerys(text: str, written: str) -> None:
    assert canonical_quantity(parse_quantity(text)) == written


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False) | st.integers(min_value=0, max_value=2 ** 70))
def test_a_number_is_written_as_its_canonical_form_of_the_same_value(number: float) -> None:
    """What an unquoted number becomes: the value Kubernetes keeps of the number, in a spelling that
    is its own canonical form (the API server writes it back unchanged)."""
    written = canonical_quantity(parse_quantity(repr(number)))
    assert parse_quantity(written) == parse_quantity(repr(number))
    assert canonical_quantity(parse_quantity(written)) == written
    assert re.fullmatch(r"(0|[1-9][0-9]*)[numkMGTPE]?", written), written


def test_what_kubernetes_refuses_is_no_quantity() -> None:
    assert [text for text in REFUSED if is_quantity(text)] == []


def spec(requests: dict[str, Any], limits: dict[str, Any], size_limit: Any = "1Gi") -> str:
    return f"""
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {{name: quantities}}
spec:
  services:
  - name: web
    image: example.com/web:1
    port: 8080
    resources: {{requests: {requests}, limits: {limits}}}
    volumes:
    - {{name: scratch, mountPath: /scratch, emptyDir: {{sizeLimit: {size_limit}}}}}
"""


def codes(text: str) -> list[str]:
    return [d.code for d in check(SpecSource("mesh.yaml", text.encode())).diagnostics]


@pytest.mark.parametrize(("requests", "limits", "size_limit", "expected"), [
    ({"cpu": ".5", "memory": "1e9"}, {"cpu": "5.", "memory": "2E9"}, "1e9", []),
    ("{cpu: .5, memory: 1e9}", "{cpu: 2, memory: 1.5e9}", "2e9", []),      # unquoted: YAML numbers
    ({"cpu": "600m"}, {"cpu": ".5"}, "1Gi", ["E711"]),                    # 600m > 0.5
    ({"memory": "1e9"}, {"memory": "1G"}, "1Gi", []),                      # equal
    ({"memory": "1e30"}, {"memory": "1e25"}, "1Gi", []),                  # both kept as 2^63-1
    ({"cpu": "0.1n"}, {"cpu": "1n"}, "1Gi", []),                          # rounded up to 1n
    ({"ephemeral-storage": "2Gi"}, {"ephemeral-storage": "1e9"}, "1Gi", ["E711"]),
    ({"ephemeral-storage": "2Gi"}, {}, "1Gi", []),                        # no default limit
    ({"cpu": "-1"}, {"cpu": "1"}, "1Gi", ["E110"]),
    ({"cpu": "1"}, {"cpu": "2"}, "-1Gi", ["E110"]),
    ({"cpu": "1e"}, {"cpu": True}, "1Gi", ["E103", "E110"]),
])
def test_requests_limits_and_size_limits_take_every_kubernetes_form(requests: Any, limits: Any, size_limit: Any,
                                                                     expected: list[str]) -> None:
    assert sorted(codes(spec(requests, limits, size_limit))) == expected


@pytest.mark.parametrize("version", schemas.oldest_and_newest())
def test_manifests_with_every_form_are_schema_valid_and_keep_the_spelling(version: str) -> None:
    text = spec("{cpu: .5, memory: 1e9, ephemeral-storage: 1e9}", {"cpu": "5.", "memory": "1.5Gi"}, "2e9")
    objects = list(build(SpecSource("mesh.yaml", for_version(text, version).encode())).kubernetes_objects())
    assert [p for obj in objects for p in schemas.errors(obj, version)] == []
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (app, *_) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == naming.APP_CONTAINER]
    # Numbers (unquoted) lost their spelling: they are written as the API server writes them back.
    assert app["resources"] == {"requests": {"cpu": "500m", "memory": "1G", "ephemeral-storage": "1G"},
                                "limits": {"cpu": "5.", "memory": "1.5Gi"}}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "2G"}
