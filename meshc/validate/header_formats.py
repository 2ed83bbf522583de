"""Envoy's reading of a header value that a route sets: a substitution format, where `%%` is a
literal '%' and any other '%' opens a command such as `%HOSTNAME%` or `%REQ(x-user):10%`.

The grammar is Envoy's (SubstitutionFormatParser: `%COMMAND(ARGUMENT):LENGTH%`, the argument
holding no ')'; Istio ports it as pkg/config/validation/header_value_validator.go). The commands,
and whether each takes an argument or a length, are those real Envoy 1.40 accepts in a route's
request_headers_to_add (tests/validate/test_header_formats.py checks every entry against it).
A command Envoy knows but this table lacks is refused too: the table errs on the side of a clear
diagnostic over a proxy that refuses its configuration. The arguments Envoy parses itself (header
names of REQ/RESP/TRAILER, FILTER_STATE's KEY:F, PATH's options) are checked as it checks them;
CEL expressions are not.
"""

from __future__ import annotations

import re

# %COMMAND%, %COMMAND(ARGUMENT)%, %COMMAND:LENGTH%, %COMMAND(ARGUMENT):LENGTH%
_COMMAND = re.compile(r"%([A-Z0-9_]+)(\([^)]*\))?(:[0-9]+)?%")

# Which forms each command takes: bare, with an argument, with a length.
_BARE = frozenset({""})
_BARE_OR_ARGUMENT = frozenset({"", "argument"})
_BARE_OR_LENGTH = frozenset({"", "length"})
_ARGUMENT = frozenset({"argument"})
_ARGUMENT_AND_LENGTH = frozenset({"argument", "argument+length"})

COMMANDS: dict[str, frozenset[str]] = {
    "ACCESS_LOG_TYPE": _BARE, "BYTES_RECEIVED": _BARE, "BYTES_RETRANSMITTED": _BARE, "BYTES_SENT": _BARE,
    "CONNECTION_ID": _BARE, "CONNECTION_TERMINATION_DETAILS": _BARE, "CUSTOM_FLAGS": _BARE,
    "DOWNSTREAM_DETECTED_CLOSE_TYPE": _BARE, "DOWNSTREAM_DIRECT_LOCAL_ADDRESS": _BARE,
    "DOWNSTREAM_DIRECT_LOCAL_PORT": _BARE, "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": _BARE,
    "DOWNSTREAM_DIRECT_REMOTE_PORT": _BARE, "DOWNSTREAM_HANDSHAKE_DURATION": _BARE,
    "DOWNSTREAM_HEADER_BYTES_RECEIVED": _BARE, "DOWNSTREAM_HEADER_BYTES_SENT": _BARE,
    "DOWNSTREAM_LOCAL_ADDRESS": _BARE, "DOWNSTREAM_LOCAL_DNS_SAN": _BARE, "DOWNSTREAM_LOCAL_EMAIL_SAN": _BARE,
    "DOWNSTREAM_LOCAL_IP_SAN": _BARE, "DOWNSTREAM_LOCAL_OTHERNAME_SAN": _BARE, "DOWNSTREAM_LOCAL_PORT": _BARE,
    "DOWNSTREAM_LOCAL_SUBJECT": _BARE, "DOWNSTREAM_LOCAL_URI_SAN": _BARE, "DOWNSTREAM_PEER_CERT": _BARE,
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1": _BARE, "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256": _BARE,
    "DOWNSTREAM_PEER_CHAIN_SERIALS": _BARE, "DOWNSTREAM_PEER_DNS_SAN": _BARE, "DOWNSTREAM_PEER_EMAIL_SAN": _BARE,
    "DOWNSTREAM_PEER_FINGERPRINT_1": _BARE, "DOWNSTREAM_PEER_FINGERPRINT_256": _BARE,
    "DOWNSTREAM_PEER_IP_SAN": _BARE, "DOWNSTREAM_PEER_ISSUER": _BARE, "DOWNSTREAM_PEER_OTHERNAME_SAN": _BARE,
    "DOWNSTREAM_PEER_SERIAL": _BARE, "DOWNSTREAM_PEER_SUBJECT": _BARE, "DOWNSTREAM_PEER_URI_SAN": _BARE,
    "DOWNSTREAM_REMOTE_ADDRESS": _BARE, "DOWNSTREAM_REMOTE_PORT": _BARE, "DOWNSTREAM_TLS_CIPHER": _BARE,
    "DOWNSTREAM_TLS_SESSION_ID": _BARE, "DOWNSTREAM_TLS_VERSION": _BARE,
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON": _BARE, "DOWNSTREAM_WIRE_BYTES_RECEIVED": _BARE,
    "DOWNSTREAM_WIRE_BYTES_SENT": _BARE, "DURATION": _BARE, "FILTER_CHAIN_NAME": _BARE, "GRPC_STATUS": _BARE,
    "GRPC_STATUS_NUMBER": _BARE, "HOSTNAME": _BARE, "LOCAL_REPLY_BODY": _BARE, "PACKETS_RETRANSMITTED": _BARE,
    "PROTOCOL": _BARE, "REQUESTED_SERVER_NAME": _BARE, "REQUEST_DURATION": _BARE, "REQUEST_HEADERS_BYTES": _BARE,
    "REQUEST_TX_DURATION": _BARE, "RESPONSE_CODE": _BARE, "RESPONSE_DURATION": _BARE, "RESPONSE_FLAGS": _BARE,
    "RESPONSE_FLAGS_LONG": _BARE, "RESPONSE_HEADERS_BYTES": _BARE, "RESPONSE_TRAILERS_BYTES": _BARE,
    "RESPONSE_TX_DURATION": _BARE, "ROUNDTRIP_DURATION": _BARE, "ROUTE_NAME": _BARE, "STREAM_ID": _BARE,
    "TRACE_ID": _BARE, "UNIQUE_ID": _BARE, "UPSTREAM_CLUSTER": _BARE, "UPSTREAM_CLUSTER_RAW": _BARE,
    "UPSTREAM_CONNECTION_ID": _BARE, "UPSTREAM_DETECTED_CLOSE_TYPE": _BARE, "UPSTREAM_HEADER_BYTES_RECEIVED": _BARE,
    "UPSTREAM_HEADER_BYTES_SENT": _BARE, "UPSTREAM_HOST": _BARE, "UPSTREAM_HOST_NAME": _BARE,
    "UPSTREAM_HOST_NAME_WITHOUT_PORT": _BARE, "UPSTREAM_LOCAL_ADDRESS": _BARE, "UPSTREAM_LOCAL_DNS_SAN": _BARE,
    "UPSTREAM_LOCAL_IP_SAN": _BARE, "UPSTREAM_LOCAL_PORT": _BARE, "UPSTREAM_LOCAL_URI_SAN": _BARE,
    "UPSTREAM_PEER_CERT": _BARE, "UPSTREAM_PEER_DNS_SAN": _BARE, "UPSTREAM_PEER_IP_SAN": _BARE,
    "UPSTREAM_PEER_ISSUER": _BARE, "UPSTREAM_PEER_SUBJECT": _BARE, "UPSTREAM_PEER_URI_SAN": _BARE,
    "UPSTREAM_PROTOCOL": _BARE, "UPSTREAM_REMOTE_ADDRESS": _BARE, "UPSTREAM_REMOTE_PORT": _BARE,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": _BARE, "UPSTREAM_TLS_CIPHER": _BARE, "UPSTREAM_TLS_SESSION_ID": _BARE,
    "UPSTREAM_TLS_VERSION": _BARE, "UPSTREAM_TRANSPORT_FAILURE_REASON": _BARE,
    "UPSTREAM_WIRE_BYTES_RECEIVED": _BARE, "UPSTREAM_WIRE_BYTES_SENT": _BARE, "VIRTUAL_CLUSTER_NAME": _BARE,
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT": _BARE_OR_ARGUMENT,
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": _BARE_OR_ARGUMENT,
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": _BARE_OR_ARGUMENT, "DOWNSTREAM_PEER_CERT_V_END": _BARE_OR_ARGUMENT,
    "DOWNSTREAM_PEER_CERT_V_START": _BARE_OR_ARGUMENT, "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": _BARE_OR_ARGUMENT,
    "EMIT_TIME": _BARE_OR_ARGUMENT, "RESPONSE_CODE_DETAILS": _BARE_OR_ARGUMENT, "START_TIME": _BARE_OR_ARGUMENT,
    "START_TIME_LOCAL": _BARE_OR_ARGUMENT, "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": _BARE_OR_ARGUMENT,
    "UPSTREAM_PEER_CERT_V_END": _BARE_OR_ARGUMENT, "UPSTREAM_PEER_CERT_V_START": _BARE_OR_ARGUMENT,
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": _BARE_OR_ARGUMENT,
    "PATH": _BARE_OR_LENGTH | _ARGUMENT_AND_LENGTH,
    "CLUSTER_METADATA": _ARGUMENT, "UPSTREAM_METADATA": _ARGUMENT,
    "CEL": _ARGUMENT_AND_LENGTH, "DYNAMIC_METADATA": _ARGUMENT_AND_LENGTH, "ENVIRONMENT": _ARGUMENT_AND_LENGTH,
    "FILTER_STATE": _ARGUMENT_AND_LENGTH, "QUERY_PARAM": _ARGUMENT_AND_LENGTH, "REQ": _ARGUMENT_AND_LENGTH,
    "RESP": _ARGUMENT_AND_LENGTH, "TRAILER": _ARGUMENT_AND_LENGTH, "UPSTREAM_FILTER_STATE": _ARGUMENT_AND_LENGTH,
}


def format_problem(value: str) -> tuple[int, str] | None:
    """The 0-based position of the first command Envoy would refuse in value, and why; or None."""
    index = value.find("%")
    while index != -1:
        if value.startswith("%%", index):
            end = index + 2
        else:
            command = _COMMAND.match(value, index)
            if command is None:
                return index, "starts no command (%NAME%, %NAME(ARGUMENT)% or with :LENGTH)"
            problem = _command_problem(command)
            if problem is not None:
                return index, problem
            end = command.end()
        index = value.find("%", end)
    return None


def _command_problem(command: re.Match[str]) -> str | None:
    name, argument, length = command.groups()
    forms = COMMANDS.get(name)
    if forms is None:
        return f"names {name}, which is not a command Envoy knows"
    form = "+".join(part for part, given in (("argument", argument), ("length", length)) if given)
    if length and int(length[1:]) >= 2 ** 64:     # Envoy reads it as an unsigned 64-bit number
        return f"has a :LENGTH of more than 64 bits: %{name}{argument or ''}{length}%"
    if form in forms:
        # A command that needs its argument refuses an empty one (`REQ requires parameters`); one
        # whose argument is optional takes `()` as none.
        if argument == "()" and "" not in forms:
            return f"needs an argument inside its (): %{name}(...)%"
        check = _ARGUMENT_CHECKS.get(name)
        return check(argument[1:-1]) if check is not None and argument else None
    if "argument" in forms and not argument:
        return f"needs an argument: %{name}(...)%"
    if argument and "argument" not in forms and "argument+length" not in forms:
        return f"takes no argument: %{name}%"
    return f"takes no :LENGTH: %{name}{argument or ''}%"


# What Envoy 1.40 requires of the arguments it parses itself (tests/validate/test_header_formats.py).
_TOKEN = re.compile(r":?[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_names(argument: str) -> str | None:
    """REQ, RESP, TRAILER: `name` or `name?alternative`, each a header name (or a pseudo-header)."""
    names = argument.split("?")
    if len(names) > 2:
        return "takes one header name, or two separated by one '?'"
    bad = next((n for n in names if n and not _TOKEN.fullmatch(n)), None)
    return None if bad is None else f"names {bad!r}, which is not a header name"


def _filter_state(argument: str) -> str | None:
    """FILTER_STATE, UPSTREAM_FILTER_STATE: `KEY`, `KEY:PLAIN`, `KEY:TYPED` or `KEY:FIELD:NAME`."""
    key, *options = argument.split(":")
    if not key:
        return "needs a filter state key before any ':'"
    kind, *rest = options or [""]
    if kind == "FIELD":
        return None if rest and rest[0] else "needs a field name after FIELD: %FILTER_STATE(KEY:FIELD:NAME)%"
    if kind not in ("", "PLAIN", "TYPED"):
        return f"has {kind!r} where PLAIN, TYPED or FIELD goes"
    return None if not any(rest) else f"takes nothing after {kind}"


def _path(argument: str) -> str | None:
    """PATH: `WQ` or `NQ` (with or without the query), then `ORIG` (the path before rewrites)."""
    query, *options = argument.split(":")
    if query not in ("", "WQ", "NQ"):
        return f"has {query!r} where WQ or NQ goes"
    if options and options[0] not in ("", "ORIG"):
        return f"has {options[0]!r} where ORIG goes"
    return None


_ARGUMENT_CHECKS = {"REQ": _header_names, "RESP": _header_names, "TRAILER": _header_names,
                    "FILTER_STATE": _filter_state, "UPSTREAM_FILTER_STATE": _filter_state, "PATH": _path}
