"""The caller's route to one upstream: timeout, retries, version split and the hash policy."""

from __future__ import annotations

from collections.abc import Sequence

from meshc.emit import naming
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


def route_config(upstream: ir.Upstream, targets: Sequence[Target]) -> Json:
    """An outbound listener's inline route table: everything to this upstream."""
    name = naming.route_name(upstream.service)
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
            "routes": [{"name": name, "match": {"prefix": "/"}, "route": route_action(upstream, targets)}],
        }],
    }


def route_action(upstream: ir.Upstream, targets: Sequence[Target]) -> Json:
    action: Json = {"timeout": duration(upstream.timeout_ms)}
    hashing = hash_policy(upstream.destination.load_balancing)
    action |= cluster_choice(targets, hashed=bool(hashing))
    if upstream.retries is not None:
        action["retry_policy"] = retry_policy(upstream.retries)
    if hashing:
        action["hash_policy"] = hashing
    action |= route_fields(upstream)
    return action


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
    return policy


def hash_policy(lb: ir.LoadBalancing) -> list[Json]:
    """What ring_hash / maglev hash on; nothing for other policies (a hash would have no effect)."""
    if lb.policy not in HASH_POLICIES or lb.hash_key is None:
        return []
    if lb.hash_key.header:
        return [{"header": {"header_name": lb.hash_key.header}}]
    return [{"connection_properties": {"source_ip": True}}]


def tcp_hash_policy(lb: ir.LoadBalancing) -> list[Json]:
    """tcp_proxy can hash on the source address only; a header key has nothing to read in TCP."""
    if lb.policy in HASH_POLICIES and lb.hash_key is not None and lb.hash_key.source_ip:
        return [{"source_ip": {}}]
    return []
