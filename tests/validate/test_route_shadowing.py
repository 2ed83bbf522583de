"""Which earlier route provably matches every request a later one would (W601): conservative both ways."""

from __future__ import annotations

from typing import Any

import pytest

from meshc.validate.models import RouteMatch
from meshc.validate.semantic import match_covers


def m(**fields: Any) -> RouteMatch:
    return RouteMatch.model_validate(fields)


@pytest.mark.parametrize(("earlier", "later"), [
    (None, m(path={"prefix": "/api"})),
    (m(path={"prefix": "/"}), m(path={"exact": "/x"}, headers={"a": {"exact": "1"}})),
    (m(path={"prefix": "/api"}), m(path={"prefix": "/api/v2"})),
    (m(path={"prefix": "/api"}), m(path={"exact": "/api/x"})),
    (m(headers={"end-user": {"present": True}}), m(headers={"End-User": {"exact": "jason"}})),
    (m(headers={"end-user": {"prefix": "ja"}}), m(headers={"end-user": {"exact": "jason"}})),
    (m(headers={"x": {"suffix": "son"}}), m(headers={"x": {"suffix": "jason"}})),
    (m(methods=["GET", "POST"]), m(methods=["GET"])),
    (m(callers=["web", "batch"]), m(callers=["web"])),
    (m(query={"debug": {"exact": "1"}}), m(query={"debug": {"exact": "1"}}, path={"prefix": "/a"})),
])
def test_covered(earlier: RouteMatch | None, later: RouteMatch) -> None:
    assert match_covers(earlier, later)


@pytest.mark.parametrize(("earlier", "later"), [
    (m(path={"prefix": "/api/v2"}), m(path={"prefix": "/api"})),
    (m(path={"exact": "/api"}), m(path={"prefix": "/api"})),
    (m(path={"regex": "/a.*"}), m(path={"exact": "/ab"})),          # regexes are never reasoned about
    (m(headers={"end-user": {"exact": "jason"}}), m()),
    (m(headers={"end-user": {"present": True}}), m(headers={"end-user": {"absent": True}})),
    (m(methods=["GET"]), m(methods=["GET", "POST"])),
    (m(methods=["GET"]), m()),
    (m(callers=["web"]), m()),
    (m(callers=["web"]), m(callers=["web", "batch"])),
    (m(query={"Debug": {"exact": "1"}}), m(query={"debug": {"exact": "1"}})),   # query names are case-sensitive
])
def test_not_covered(earlier: RouteMatch, later: RouteMatch) -> None:
    assert not match_covers(earlier, later)


def test_gateway_route_after_a_catch_all_is_shadowed() -> None:
    from meshc.load import SpecSource
    from meshc.pipeline import check

    spec = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: edge}
spec:
  services:
  - {name: web, image: web:1, port: 8080}
  - {name: api, image: api:1, port: 8080}
  gateways:
  - name: public
    listeners: [{port: 80, hosts: [shop.example.com]}]
    routes:
    - {match: {path: {prefix: /}}, service: web}
    - {match: {host: shop.example.com, path: {prefix: /api}}, service: api}
"""
    checked = check(SpecSource("mesh.yaml", spec.encode()))
    assert [(d.code, d.span.line if d.span else 0) for d in checked.diagnostics] == [("W601", 14)]   # the second route
    swapped = spec.replace("    - {match: {path: {prefix: /}}, service: web}\n", "") + \
        "    - {match: {path: {prefix: /}}, service: web}\n"
    assert check(SpecSource("mesh.yaml", swapped.encode())).diagnostics == ()
