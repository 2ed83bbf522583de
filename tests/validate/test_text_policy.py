"""Strings that would be accepted and then break Envoy or a YAML reader are refused with a
position; what is accepted is written so that it reads the same as JSON and as YAML."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from meshc import render
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, build_bundle, check
from meshc.text import escape_json, first_unsafe

BASE: dict[str, Any] = {
    "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "demo"},
    "spec": {"services": [
        {"name": "web", "image": "ghcr.io/acme/web:1.0.0", "port": 8080,
         "upstreams": [{"service": "api", "localPort": 9001}, {"service": "pay", "localPort": 9002}]},
        {"name": "api", "image": "ghcr.io/acme/api:1.0.0", "port": 9090, "healthCheck": {"path": "/healthz"},
         "env": {"GREETING": "hello"}, "loadBalancer": {"policy": "ring_hash", "hashOn": {"header": "x-user"}},
         "resources": {"requests": {"cpu": "100m"}}},
        {"name": "pay", "port": 8443, "endpoints": [{"address": "10.0.0.1", "port": 8443}]},
    ]},
}


def codes_of(spec: dict[str, Any], *, escaped: bool = True) -> list[str]:
    # json.dumps escapes every character as \uXXXX, which YAML reads back: a spec written with
    # escapes. YAML does not join surrogate pairs, so characters beyond the BMP go in raw.
    checked = check(SpecSource("m.yaml", json.dumps(spec, ensure_ascii=escaped).encode()))
    return [d.code for d in checked.diagnostics]


def with_value(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    parent = spec
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return spec


def test_the_base_spec_is_clean() -> None:
    assert codes_of(BASE) == []


PLACES = [
    ("spec", "services", 1, "env", "GREETING"),
    ("spec", "services", 1, "image"),
    ("spec", "services", 1, "healthCheck", "path"),
    ("metadata", "name"),
    ("spec", "services", 1, "loadBalancer", "hashOn", "header"),
]


@pytest.mark.parametrize("path", PLACES)
@pytest.mark.parametrize("char", ["\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\uffff", "\ufdd0", "\x1b", "\r",
                                  "\U0001fffe"])
def test_characters_yaml_or_envoy_refuse_are_errors_wherever_they_are(path: tuple[Any, ...], char: str) -> None:
    original = BASE
    for part in path:
        original = original[part]
    assert "E111" in codes_of(with_value(path, f"{original}{char}"), escaped=char <= "\uffff")


@pytest.mark.parametrize("path, value", [
    (("spec", "services", 0, "name"), "web\n"),
    (("metadata", "name"), "demo\n"),
    (("spec", "services", 1, "image"), "ghcr.io/acme/api:1.0.0\n"),
    (("spec", "services", 1, "healthCheck", "path"), "/healthz\n"),
    (("spec", "services", 1, "loadBalancer", "hashOn", "header"), "x-user\n"),
    (("spec", "services", 1, "resources", "requests", "cpu"), "100m\n"),
    (("spec", "services", 1, "env"), {"GREETING\n": "x"}),
    (("spec", "services", 2, "endpoints", 0, "address"), "10.0.0.1\n"),
])
def test_a_trailing_newline_never_passes_an_anchored_pattern(path: tuple[Any, ...], value: Any) -> None:
    assert codes_of(with_value(path, value)), value


@pytest.mark.parametrize("path", [("healthCheck", "path"), ("loadBalancer", "hashOn", "header")])
def test_envoy_strings_take_no_tab_space_or_non_ascii(path: tuple[str, ...]) -> None:
    for bad in ("/a\tb", "/a b", "/caf\u00e9"):
        value = bad if path[0] == "healthCheck" else bad.lstrip("/")
        assert "E110" in codes_of(with_value(("spec", "services", 1, *path), value)), bad


def test_free_text_keeps_tabs_newlines_and_non_ascii_and_writes_them_so_yaml_reads_them_back() -> None:
    value = "line one\n\tline two caf\u00e9 \U0001F600"
    checked = check(SpecSource("m.yaml", json.dumps(with_value(("spec", "services", 1, "env", "GREETING"),
                                                                value), ensure_ascii=False).encode()))
    assert checked.ok, checked.diagnostics
    bundle = build_bundle(checked, BuildOptions())
    text = bundle.files["kubernetes/api.yaml"].decode()
    found = [env for doc in yaml.safe_load_all(text) if doc["kind"] == "Deployment"
             for c in doc["spec"]["template"]["spec"]["containers"] for env in c.get("env", [])
             if env["name"] == "GREETING"]
    assert found and all(env["value"] == value for env in found)


@pytest.mark.parametrize("address", ["1.1.A.1", "2001:db8::10::20", "..hello.", "1.1.1", "256.0.0.1", "01.2.3.4",
                                     "-a.example.com", "a-.example.com", "a..b", "example.123", "a" * 64 + ".com",
                                     ":::", "1.2.3.4.5",
                                     "fe80::1%eth0"])   # a zone: no NetworkPolicy ipBlock takes it (Go's ParseCIDR)
def test_endpoint_addresses_that_can_never_resolve_are_positioned_errors(address: str) -> None:
    checked = check(SpecSource("m.yaml", json.dumps(with_value(("spec", "services", 2, "endpoints", 0, "address"),
                                                                address)).encode()))
    assert [d.code for d in checked.diagnostics] == ["E112"], checked.diagnostics
    assert checked.diagnostics[0].span is not None and checked.diagnostics[0].span.line == 1


@pytest.mark.parametrize("address", ["10.0.0.1", "2001:db8::10:20", "::1", "api.stripe.com", "localhost",
                                     "my-db.internal", "a1.b2.c3", "::ffff:10.0.0.1"])
def test_ip_addresses_and_dns_names_pass(address: str) -> None:
    codes = codes_of(with_value(("spec", "services", 2, "endpoints", 0, "address"), address))
    # A DNS name is valid; the NetworkPolicy merely cannot name it (W503), which is not this test's concern.
    assert [code for code in codes if code != "W503"] == []


def test_the_renderer_escapes_what_yaml_would_refuse_or_reread() -> None:
    tricky = "a\x7fb\x85c\x9fd\u2028e\u2029f\ufffeg\uffffh\ufdd0i caf\u00e9 \U0001F600 \U0001fffe"
    data = render.document({"k": tricky, "list": [tricky]})
    assert yaml.safe_load(data) == json.loads(data) == {"k": tricky, "list": [tricky]}
    assert b"\x7f" not in data and b"\xc2\x85" not in data and b"\xe2\x80\xa8" not in data
    assert json.loads(render.compact({"k": tricky}))["k"] == tricky
    plain = render.document({"k": "caf\u00e9"})
    assert escape_json(plain) is plain          # nothing to do: the bytes are not copied


def test_the_policy_names_each_class_of_character() -> None:
    assert first_unsafe("ok\tfine\n") is None
    assert first_unsafe("ok\tfine", token=True) == 2
    assert first_unsafe("x\ud800") == 1


@pytest.mark.parametrize("sni", ["10.0.0.1", "a" * 64 + ".example.com"])
def test_an_sni_that_no_certificate_names_as_a_host_is_a_positioned_error(sni: str) -> None:
    """An address is no SNI (RFC 6066), and the sidecar checks the certificate for sni as a DNS name:
    every connection would fail. Nor can a label of more than 63 characters be in a host name."""
    spec = with_value(("spec", "services", 2, "tls"), {"sni": sni})
    checked = check(SpecSource("m.yaml", json.dumps(spec).encode()))
    assert [d.code for d in checked.diagnostics] == ["E110"], checked.diagnostics
    assert "sni" in checked.diagnostics[0].message


def test_an_sni_that_is_a_host_name_passes() -> None:
    assert codes_of(with_value(("spec", "services", 2, "tls"), {"sni": "pay.example.com"})) == []
