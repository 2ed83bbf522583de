"""Inbound rate limit (envoy.filters.http.local_ratelimit): a token bucket per sidecar; a request
that finds it empty is answered 429 without reaching the app.

Listener: the filter with the bucket, enabled and enforced for every request (Envoy's defaults
for both are 0%: a bucket alone would limit nothing). Route: the health check path is exempt, so
callers' active health checks never eat the app's tokens or get a 429 that ejects a healthy host.
Extra resources: none.
"""

from __future__ import annotations

from meshc.emit.envoy.percent import fractional
from meshc.emit.envoy.values import Json, duration
from meshc.resolve import ir
from meshc.vocabulary import GRPC_HEALTH_PATH

FILTER = "envoy.filters.http.local_ratelimit"
TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
STAT_PREFIX = "inbound_rate_limit"
ENABLED_KEY = "meshc.inbound_rate_limit.enabled"
ENFORCED_KEY = "meshc.inbound_rate_limit.enforced"


def listener_filter(service: ir.Service) -> Json | None:
    limit = service.rate_limit
    if limit is None:
        return None
    return {"name": FILTER, "typed_config": {
        "@type": TYPE,
        "stat_prefix": STAT_PREFIX,
        "token_bucket": {"max_tokens": limit.burst, "tokens_per_fill": limit.requests,
                         "fill_interval": duration(limit.per_ms)},
        "filter_enabled": {"runtime_key": ENABLED_KEY, "default_value": fractional(100)},
        "filter_enforced": {"runtime_key": ENFORCED_KEY, "default_value": fractional(100)},
    }}


def exempt_paths(service: ir.Service) -> list[str]:
    """Paths the limit does not count: the health check callers' sidecars send."""
    if service.rate_limit is None or service.health_check is None:
        return []
    if service.protocol is ir.Protocol.GRPC:
        return [GRPC_HEALTH_PATH]
    return [service.health_check.path] if service.health_check.path else []


def exempt_route_config(service: ir.Service) -> Json:
    """Per-route config without filter_enabled (0% by default): the limiter passes these requests.
    Envoy insists on a bucket in every per-route config, so the service's is repeated, unused."""
    limiter = listener_filter(service)
    assert limiter is not None
    config = {k: v for k, v in limiter["typed_config"].items() if k not in ("filter_enabled", "filter_enforced")}
    return {FILTER: config}
