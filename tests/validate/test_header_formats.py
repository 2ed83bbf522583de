"""The header-value grammar and command table of meshc.validate.header_formats, against real Envoy:
every form the table accepts, Envoy accepts; the forms it refuses, Envoy refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshc.validate.header_formats import COMMANDS, format_problem
from tests.support.envoy import validate_config, write_bootstrap

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _bootstrap(values: list[str]) -> dict[str, Any]:
    """One listener whose only route adds a request header per value, as meshc's routes do."""
    headers = [{"header": {"key": f"x-value-{i}", "value": v}} for i, v in enumerate(values)]
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200}, "request_headers_to_add": headers}
    manager = {"@type": _HCM, "stat_prefix": "formats",
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
               "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]}}
    listener = {"name": "formats", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
                "filter_chains": [{"filters": [{"name": "hcm", "typed_config": manager}]}]}
    return {"static_resources": {"listeners": [listener]}}


def _envoy_accepts(values: list[str], tmp_path: Path, name: str = "formats") -> bool:
    return validate_config(write_bootstrap(_bootstrap(values), tmp_path / f"{name}.json")).returncode == 0


def _accepted_forms() -> list[str]:
    forms = {"": "%{}%", "argument": "%{}({})%", "length": "%{}:5%", "argument+length": "%{}({}):5%"}
    return [forms[form].format(name, ARGUMENTS.get(name, "x")) for name, allowed in sorted(COMMANDS.items())
            for form in sorted(allowed)]


ARGUMENTS = {"PATH": "WQ"}   # a command whose argument is one of a few words


# From Istio's TestValidateHTTPHeaderValue (pkg/config/validation/validation_test.go), and the
# shapes Envoy's SubstitutionFormatParser refuses.
ACCEPTED = ["foo", "%HOSTNAME%", "100%%", "prefix %HOSTNAME% suffix", "%DOWNSTREAM_PEER_CERT_V_END(%b %d %H:%M:%S %Y %Z)%",
            "%DYNAMIC_METADATA(com.test.my_filter)%", "%%", "a%%b%%", "%REQ(x-user):10%", "%START_TIME(%s)%", "",
            "%START_TIME()%",   # an optional argument may be empty
            "%REQ(:path)%", "%REQ(x-user?:authority)%", "%REQ(x?)%", "%FILTER_STATE(k:FIELD:f)%", "%FILTER_STATE(k:PLAIN)%",
            "%PATH(NQ:ORIG)%", "%PATH(:ORIG):10%", "%REQ(a):18446744073709551615%"]
REFUSED = ["%START_TIME%%", "abc%123", "100%", "%", "%REQ%", "%HOSTNAME:10%", "%hostname%", "%HOST NAME%",
           "%REQ(x-user)", "%PROTOCOL(x)%", "%FOO_BAR%",
           "%REQ()%", "%FILTER_STATE():5%", "%UPSTREAM_METADATA()%",   # a needed argument may not
           "%REQ(a b)%", "%RESP(a/b)%", "%TRAILER(a:b)%", "%REQ(a?b?c)%", "%REQ(::path)%",   # header names
           "%FILTER_STATE(k:BAD)%", "%FILTER_STATE(k:PLAIN:f)%", "%FILTER_STATE(k:FIELD)%", "%UPSTREAM_FILTER_STATE(:PLAIN)%",
           "%PATH(XQ)%", "%PATH(WQ:REQ)%", "%REQ(a):18446744073709551616%"]


@pytest.mark.parametrize("value", ACCEPTED)
def test_accepted_values_have_no_problem(value: str) -> None:
    assert format_problem(value) is None


@pytest.mark.parametrize("value", REFUSED)
def test_refused_values_have_a_problem(value: str) -> None:
    assert format_problem(value) is not None


@pytest.mark.envoy
def test_every_value_and_form_the_table_accepts_real_envoy_accepts(tmp_path: Path) -> None:
    values = ACCEPTED + _accepted_forms()
    assert all(format_problem(v) is None for v in values)
    assert _envoy_accepts(values, tmp_path)


@pytest.mark.envoy
@pytest.mark.parametrize("value", REFUSED)
def test_real_envoy_refuses_what_the_check_refuses(value: str, tmp_path: Path) -> None:
    assert not _envoy_accepts([value], tmp_path)
