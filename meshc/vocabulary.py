"""The spec's closed vocabularies (load-balancing policies, protocols, ...), shared by the spec
models and the IR so both speak of the same values."""

from __future__ import annotations

from enum import StrEnum


class LbPolicy(StrEnum):
    RANDOM = "random"
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    LEAST_REQUEST = "least_request"
    RING_HASH = "ring_hash"
    MAGLEV = "maglev"


HASH_POLICIES = frozenset({LbPolicy.RING_HASH, LbPolicy.MAGLEV})
# The one method gRPC Health checks call: the request path every gRPC health check sends.
GRPC_HEALTH_PATH = "/grpc.health.v1.Health/Check"


class Protocol(StrEnum):
    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"
    TCP = "tcp"


class AccessLog(StrEnum):
    JSON = "json"
    TEXT = "text"
    OFF = "off"


class MtlsMode(StrEnum):
    STRICT = "strict"
    PERMISSIVE = "permissive"
    OFF = "off"


class FailurePolicy(StrEnum):
    RETRY = "retry"
    FAIL_FAST = "fail_fast"


# Envoy's retry_on conditions: router (HTTP) and gRPC status based.
HTTP_RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "http3-post-connect-failure",
})
GRPC_RETRY_ON = frozenset({"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"})
RETRY_ON = HTTP_RETRY_ON | GRPC_RETRY_ON
