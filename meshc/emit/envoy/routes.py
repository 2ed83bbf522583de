"""The caller's route to one upstream: timeout, retries, version split and the hash policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshc.emit import naming
from meshc.emit.envoy import fault, header_mutation, mirror, route_match
from meshc.emit.envoy.clusters import Target
from meshc.emit.envoy.tls import route_fields
from meshc.emit.envoy.values import (
    PREVIOUS_HOSTS_PREDICATE,
    PREVIOUS_HOSTS_TYPE,
    Json,
    duration,
)
from meshc.resolve import ir

HASH_POLICIES = frozenset({ir.LbPolicy.RING_HASH, ir.LbPolicy.MAGLEV})
HOST_SELECTION_ATTEMPTS = 3    # how hard a retry tries to pick a host other than the one that failed


def route_config(upstream: ir.Upstream, targets: Sequence[Target],
                 services: Mapping[str, ir.Service] | None = None) -> Json:
    """An outbound listener's inline route table: the callee's routes for this caller, in order
    (first match wins), then everything else to the callee's version split."""
    name = naming.route_name(upstream.service)
    routes = [_route(route, upstream, targets, services or {}) for route in upstream.routes]
    routes.append({"name": name, "match": {"prefix": "/"}, "route": route_action(upstream, targets)})
    return {
        "name": name,
        # Envoy re-reads lds.yaml and cds.yaml on any move into the config directory, in no promised
        # order; with validation, a listener whose new cluster is still warming would be rejected and
        # stay rejected until the next move. Unvalidated, it loads and answers 503 for the instant
        # the cluster is missing. meshc always emits both halves together, and the tests load them.
        "validate_clusters": False,
        "virtual_hosts": [{
            "name": upstream.service,
            "domains": ["*"],
            "include_request_attempt_count": True,   # x-envoy-attempt-count tells the callee a retry from a try
            "routes": routes,
        }],
    }


def route_action(upstream: ir.Upstream, targets: Sequence[Target], timeout_ms: int | None = None,
                 retries: ir.RetryPolicy | None | bool = True) -> Json:
    """`timeout_ms`/`retries` override the upstream's (a route's own); retries=True keeps its."""
    action: Json = {"timeout": duration(upstream.timeout_ms if timeout_ms is None else timeout_ms)}
    hashing = hash_policy(upstream.destination.load_balancing)
    action |= cluster_choice(targets, hashed=bool(hashing))
    policy = upstream.retries if retries is True else retries
    if isinstance(policy, ir.RetryPolicy):
        action["retry_policy"] = retry_policy(policy)
    if hashing:
        action["hash_policy"] = hashing
    action |= route_fields(upstream)
    return action


def _route(route: ir.Route, upstream: ir.Upstream, targets: Sequence[Target],
           services: Mapping[str, ir.Service]) -> Json:
    """One of the callee's routes: its match, its versions, and what each feature adds to it."""
    action = route_action(upstream, route_targets(route, targets), route.timeout_ms, route.retries)
    action |= mirror.route_fields(route, upstream, targets, services) | header_mutation.action_fields(route)
    envoy_route: Json = {"name": naming.request_route_name(upstream.service, route.name, route.index),
                         "match": route_match.match(route.match), "route": action}
    envoy_route |= header_mutation.route_fields(route)
    per_filter = fault.route_config(route)
    if per_filter:
        envoy_route["typed_per_filter_config"] = per_filter
    return envoy_route


def route_targets(route: ir.Route, targets: Sequence[Target]) -> list[Target]:
    """The route's own version split over this caller's clusters, or the service's."""
    if not route.versions:
        return list(targets)
    by_version = {t.version.name: t for t in targets if t.version is not None}
    return [Target(by_version[share.name].version, by_version[share.name].cluster, share.weight)
            for share in route.versions]


def cluster_choice(targets: Sequence[Target], hashed: bool = False) -> Json:
    """One version: straight to its cluster; several: split by version weight.

    Versions at weight 0 keep their (warm) cluster but leave the split: tcp_proxy refuses a weight
    of 0, and a route table without them means the same to both filters. A `hashed` route picks the
    version from the request's hash too (`use_hash_policy`): a random pick per request would move
    a hash key between versions, and so between hosts, defeating ring_hash/maglev affinity.
    """
    weighted = [t for t in targets if t.weight > 0] or list(targets)
    if len(weighted) == 1:
        return {"cluster": weighted[0].cluster}
    split: Json = {"clusters": [{"name": t.cluster, "weight": t.weight} for t in weighted]}
    if hashed:
        split["use_hash_policy"] = True
    return {"weighted_clusters": split}


def retry_policy(retries: ir.RetryPolicy) -> Json:
    policy: Json = {
        "retry_on": ",".join(retries.retry_on),
        "num_retries": retries.attempts,
        # A retry goes to another host when there is one.
        "retry_host_predicate": [{"name": PREVIOUS_HOSTS_PREDICATE, "typed_config": {"@type": PREVIOUS_HOSTS_TYPE}}],
        "host_selection_retry_max_attempts": HOST_SELECTION_ATTEMPTS,
    }
    if retries.per_try_timeout_ms is not None:
        policy["per_try_timeout"] = duration(retries.per_try_timeout_ms)
    if retries.backoff is not None:
        policy["retry_back_off"] = {"base_interval": duration(retries.backoff.base_interval_ms),
                                    "max_interval": duration(retries.backoff.max_interval_ms)}
    if retries.retriable_status_codes:
        policy["retriable_status_codes"] = list(retries.retriable_status_codes)
    if retries.retriable_headers:
        policy["retriable_headers"] = [{"name": name, "present_match": True} for name in retries.retriable_headers]
    return policy


def hash_policy(lb: ir.LoadBalancing) -> list[Json]:
    """What ring_hash / maglev hash on; nothing for other policies (a hash would have no effect)."""
    if lb.policy not in HASH_POLICIES or lb.hash_key is None:
        return []
    if lb.hash_key.header:
        return [{"header": {"header_name": lb.hash_key.header}}]
    if lb.hash_key.cookie is not None:
        return [{"cookie": cookie_hash(lb.hash_key.cookie)}]
    if lb.hash_key.query_parameter is not None:
        return [{"query_parameter": {"name": lb.hash_key.query_parameter}}]
    return [{"connection_properties": {"source_ip": True}}]


def cookie_hash(cookie: ir.CookieKey) -> Json:
    """With a ttl, Envoy sets the cookie on the answer to a request without one: the client sticks."""
    hashed: Json = {"name": cookie.name}
    if cookie.ttl_ms is not None:
        hashed["ttl"] = duration(cookie.ttl_ms)
    if cookie.path is not None:
        hashed["path"] = cookie.path
    return hashed


def tcp_hash_policy(lb: ir.LoadBalancing) -> list[Json]:
    """tcp_proxy can hash on the source address only; a header key has nothing to read in TCP."""
    if lb.policy in HASH_POLICIES and lb.hash_key is not None and lb.hash_key.source_ip:
        return [{"source_ip": {}}]
    return []
