"""Did-you-mean hints for unknown fields (E101): a misspelt name anywhere in the spec, including
the models declared after the ones that use them (gateways, routes), and a field written one
level too high (`host` beside `match` instead of inside it)."""

from __future__ import annotations

import pytest

from meshc.load import SpecSource
from meshc.pipeline import check

HEAD = """apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata:
  name: demo
spec:
  services:
  - name: web
    image: ghcr.io/acme/web:1.0.0
    port: 8080
"""

GATEWAY = HEAD + """  gateways:
  - name: public
    listeners:
    - {port: 443, hosts: [shop.example.com], tls: {secretName: shop-tls}}
    routes:
    - {match: {path: {prefix: /}}, service: web}
"""


def e101(text: str) -> list[str]:
    checked = check(SpecSource("mesh.yaml", text.encode()))
    return [d.message for d in checked.diagnostics if d.code == "E101"]


@pytest.mark.parametrize(("wrong", "right", "hint"), [
    ("    listeners:\n", "    listners:\n", "did you mean 'listeners'?"),
    ("    - {match: {path: {prefix: /}}, service: web}\n",
     "    - {match: {path: {prefix: /}}, servce: web}\n", "did you mean 'service'?"),
    ("    - {match: {path: {prefix: /}}, service: web}\n",
     "    - {host: shop.example.com, match: {path: {prefix: /}}, service: web}\n", "did you mean 'match.host'?"),
])
def test_gateway_fields_get_spelling_hints(wrong: str, right: str, hint: str) -> None:
    assert GATEWAY.count(wrong) == 1
    messages = e101(GATEWAY.replace(wrong, right))
    assert len(messages) == 1 and messages[0].endswith(hint), messages


def test_no_hint_for_a_name_nothing_resembles() -> None:
    messages = e101(HEAD.replace("    port: 8080\n", "    port: 8080\n    zzqx: 1\n"))
    assert messages == ["unknown field 'zzqx' in spec.services[0]"]


@pytest.mark.parametrize(("added", "message"), [
    ("    circuitBreaker: {retryBudgt: {percent: 20}}\n",
     "unknown field 'retryBudgt' in spec.services[0].circuitBreaker; did you mean 'retryBudget'?"),
    ("    rateLimit: {requets: 10}\n",
     "unknown field 'requets' in spec.services[0].rateLimit; did you mean 'requests'?"),
    ("    extraCallers: [{namespace: a, serviceAcount: b}]\n",
     "unknown field 'serviceAcount' in spec.services[0].extraCallers[0]; did you mean 'serviceAccount'?"),
])
def test_fields_of_models_declared_further_down_are_named_as_in_the_spec(added: str, message: str) -> None:
    """A field whose type is a model declared further down (`retryBudget`, `rateLimit`,
    `extraCallers`) is suggested, and reached, by its name in the spec, not its Python name."""
    assert e101(HEAD + added) == [message]
