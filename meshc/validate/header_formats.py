"""Envoy's reading of a header value that a route sets: a substitution format, where `%%` is a
literal '%' and any other '%' opens a command such as `%HOSTNAME%` or `%REQ(x-user):10%`.

The grammar is Envoy's (SubstitutionFormatParser: `%COMMAND(ARGUMENT):LENGTH%`, the argument
holding no ')'; Istio ports it as pkg/config/validation/header_value_validator.go). The commands,
and whether each takes an argument or a length, are those real Envoy 1.40 accepts in a route's
request_headers_to_add (tests/validate/test_header_formats.py checks every entry against it).
A command Envoy knows but this table lacks is refused too: the table errs on the side of a clear
diagnostic over a proxy that refuses its configuration.
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
    "PATH": _BARE_OR_LENGTH,
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
    if form in forms:
        # A command that needs its argument refuses an empty one (`REQ requires parameters`); one
        # whose argument is optional takes `()` as none.
        return f"needs an argument inside its (): %{name}(...)%" if argument == "()" and "" not in forms else None
    if "argument" in forms and not argument:
        return f"needs an argument: %{name}(...)%"
    if argument and "argument" not in forms and "argument+length" not in forms:
        return f"takes no argument: %{name}%"
    return f"takes no :LENGTH: %{name}{argument or ''}%"
