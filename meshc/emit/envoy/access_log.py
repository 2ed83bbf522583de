"""Access logs to stdout in the format the mesh asks for (proxy.accessLog: json | text | off)."""

from __future__ import annotations

from meshc.emit.envoy.values import Json
from meshc.resolve import ir

STDOUT_LOGGER = "envoy.access_loggers.stdout"
STDOUT_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"

# Single-operator values keep their type in json_format (numbers stay numbers).
HTTP_JSON_FORMAT: Json = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "authority": "%REQ(:AUTHORITY)%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "attempt_count": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
}

TCP_JSON_FORMAT: Json = {
    "start_time": "%START_TIME%",
    "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
}


# Who called, on an mTLS inbound listener: the URI SAN (SPIFFE ID) of the client certificate.
PEER_IDENTITY_FORMAT: Json = {"downstream_peer_identity": "%DOWNSTREAM_PEER_URI_SAN%"}


def access_logs(mode: ir.AccessLog, tcp: bool = False, peer_identity: bool = False) -> list[Json]:
    """The `access_log` list of an HTTP connection manager or a tcp_proxy; empty when off.

    `text` uses Envoy's default format, which operators already know how to read and parse.
    `peer_identity` (json only): log the caller's SPIFFE ID, for listeners that take mTLS.
    """
    if mode is ir.AccessLog.OFF:
        return []
    config: Json = {"@type": STDOUT_LOG_TYPE}
    if mode is ir.AccessLog.JSON:
        fields = TCP_JSON_FORMAT if tcp else HTTP_JSON_FORMAT
        config["log_format"] = {"json_format": {**fields, **PEER_IDENTITY_FORMAT} if peer_identity else fields}
    return [{"name": STDOUT_LOGGER, "typed_config": config}]
