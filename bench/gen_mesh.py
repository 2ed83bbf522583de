"""Synthetic mesh.yaml for benchmarks: N services in tiers, an acyclic call graph, mixed policies.

The same (N, seed) always gives the same bytes. The spec is valid and quiet: `meshc validate` exits 0
with no warning, because every timeout, retry and amplification budget is chosen tier by tier:

    tier 0  edge gateways (the entry points)     call tier 1..2   timeout 15s, 2 retries x 5s
    tier 1  backends-for-frontends               call tier 2..3   timeout 5s,  1 retry  x 2s
    tier 2  domain services                      call tier 3..4   timeout 2s,  1 retry  x 1s
    tier 3  core services                        call tier 4      spec.defaults: 1s, 1 retry x 500ms
    tier 4  leaves: caches and databases (tcp), leaf APIs, external providers (static endpoints)

Calls only go to a deeper tier, so the graph has no cycle; a caller's per-try timeout always covers
the slowest wait of its callee. Every deployed service has two versions (a stable one and a canary).

    python bench/gen_mesh.py 1000 --seed 1 -o /tmp/mesh-1000.yaml
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field

TIER_SHARES = (0.08, 0.14, 0.30, 0.28, 0.20)
EXTERNAL_SHARE_OF_LEAVES = 0.25
TCP_SHARE_OF_LEAVES = 0.35
MAX_UPSTREAMS = 3
FIRST_LOCAL_PORT = 7001

# Route policies by the caller's tier: (timeout, retries as written in YAML, effective attempts).
# Tier 3 writes nothing and inherits spec.defaults (1s, 1 retry x 500ms).
DEFAULT_ATTEMPTS = 1
ROUTE_POLICY: dict[int, tuple[str | None, str | None, int]] = {
    0: ("15s", "{attempts: 2, perTryTimeout: 5s, retryOn: [5xx, unavailable, connect-failure, reset]}", 2),
    1: ("5s", "{attempts: 1, perTryTimeout: 2s}", 1),
    2: ("2s", "{perTryTimeout: 1s}", DEFAULT_ATTEMPTS),
    3: (None, None, DEFAULT_ATTEMPTS),
}
FAIL_FAST_TIMEOUT = {0: "5s", 1: "2s", 2: "1s", 3: "1s"}

DOMAINS = (
    "catalog", "checkout", "payments", "inventory", "search", "users", "orders", "shipping", "pricing",
    "reviews", "ratings", "auth", "sessions", "notify", "email", "ledger", "billing", "recs", "media",
    "promo", "loyalty", "fraud", "tax", "returns", "wishlist", "support", "geo", "content", "ads", "audit",
)
ROLES = {
    0: ("gateway", "edge", "web", "mobile-gw"),
    1: ("bff", "graphql", "portal", "aggregator"),
    2: ("api", "service", "manager", "engine"),
    3: ("core", "store-api", "indexer", "resolver", "registry"),
    4: ("db-proxy", "cache", "queue", "leaf", "provider"),
}
TCP_LEAF_ROLES = (("cache", 6379), ("db-proxy", 5432), ("queue", 9092))
PROTOCOL_PORTS = {"http": (8080, 8000, 3000), "http2": (8080, 8443), "grpc": (50051, 9000, 9090)}


@dataclass
class Svc:
    name: str
    tier: int
    protocol: str
    port: int
    external: bool = False
    upstreams: list[Svc] = field(default_factory=list)
    fail_fast: set[str] = field(default_factory=set)
    lb: str | None = None
    extras: list[str] = field(default_factory=list)   # extra YAML lines for the service body


def tier_sizes(n: int) -> list[int]:
    """How many services per tier; every tier gets one once n allows it."""
    if n < len(TIER_SHARES):
        return [1] * n + [0] * (len(TIER_SHARES) - n)
    sizes = [max(1, round(n * share)) for share in TIER_SHARES]
    sizes[2] += n - sum(sizes)
    return sizes


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def make(self, tier: int, role: str | None = None) -> str:
        domain = self.rng.choice(DOMAINS)
        base = f"{domain}-{role or self.rng.choice(ROLES[tier])}"
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}-{k}", k + 1
        self.used.add(name)
        return name


def build_graph(n: int, seed: int) -> list[Svc]:
    rng = random.Random(seed)
    names = _Names(rng)
    tiers: list[list[Svc]] = []
    for tier, size in enumerate(tier_sizes(n)):
        tiers.append([_make_service(tier, names, rng, i, size) for i in range(size)])
    _connect(tiers, rng)
    services = [s for tier in tiers for s in tier]
    for svc in services:
        _choose_policies(svc, rng)
    return services


def _make_service(tier: int, names: _Names, rng: random.Random, index: int, size: int) -> Svc:
    if tier == 4 and index < size * EXTERNAL_SHARE_OF_LEAVES:
        return Svc(names.make(4, "provider"), 4, "http", 443, external=True)
    if tier == 4 and index < size * (EXTERNAL_SHARE_OF_LEAVES + TCP_SHARE_OF_LEAVES):
        role, port = TCP_LEAF_ROLES[index % len(TCP_LEAF_ROLES)]
        return Svc(names.make(4, role), 4, "tcp", port)
    protocol = "http" if tier == 0 else rng.choices(("http", "http2", "grpc"), weights=(55, 15, 30))[0]
    return Svc(names.make(tier, "leaf" if tier == 4 else None), tier, protocol, rng.choice(PROTOCOL_PORTS[protocol]))


def _connect(tiers: list[list[Svc]], rng: random.Random) -> None:
    """Give every service below tier 0 one caller from a shallower tier, then add random extra calls."""
    for tier in range(1, len(tiers)):
        for callee in tiers[tier]:
            callers = [s for t in (tier - 1, tier - 2) if t >= 0 for s in tiers[t] if len(s.upstreams) < MAX_UPSTREAMS]
            if callers:
                rng.choice(callers).upstreams.append(callee)
    for tier in range(len(tiers) - 1):
        deeper = [s for t in (tier + 1, tier + 2) if t < len(tiers) for s in tiers[t]]
        for caller in tiers[tier]:
            wanted = rng.choice((1, 2, 2, 3, 3))
            for callee in rng.sample(deeper, min(len(deeper), MAX_UPSTREAMS)):
                if len(caller.upstreams) >= wanted:
                    break
                if callee not in caller.upstreams:
                    caller.upstreams.append(callee)


def _choose_policies(svc: Svc, rng: random.Random) -> None:
    if svc.external:
        svc.lb = rng.choice(("weighted", "weighted", "round_robin"))
    elif svc.protocol == "tcp":
        svc.lb = rng.choice(("least_request", "random", None))
    else:
        svc.lb = rng.choices(
            ("ring_hash", "maglev", "least_request", "random", "round_robin", None),
            weights=(8, 8, 25, 7, 12, 40))[0]
    for callee in svc.upstreams:
        if callee.external or rng.random() < 0.12:
            svc.fail_fast.add(callee.name)


def entry_points(services: list[Svc]) -> list[str]:
    called = {u.name for s in services for u in s.upstreams}
    return sorted(s.name for s in services if s.tier == 0 or s.name not in called)


def worst_amplification(services: list[Svc]) -> int:
    """Max over call paths of prod(1 + retries): the same figure meshc's analysis computes."""
    factor = {s.name: 1 for s in services}
    for svc in sorted(services, key=lambda s: s.tier):    # tiers are a topological order
        for callee in svc.upstreams:
            if callee.name in svc.fail_fast:
                attempts = 0
            elif callee.protocol == "tcp":
                attempts = DEFAULT_ATTEMPTS    # nothing written on the upstream: spec.defaults applies
            else:
                attempts = ROUTE_POLICY[min(svc.tier, 3)][2]
            factor[callee.name] = max(factor[callee.name], factor[svc.name] * (1 + attempts))
    return max(factor.values())


# --- YAML text ----------------------------------------------------------------------------------

def render(n: int, seed: int, services: list[Svc]) -> str:
    rng = random.Random(seed * 7919 + 1)
    budget = max(10, worst_amplification(services))
    lines = _header(n, seed, services, budget)
    by_team: dict[str, list[Svc]] = {}
    for svc in services:
        by_team.setdefault(svc.name.split("-")[0], []).append(svc)
    anchors: set[str] = set()
    for team in sorted(by_team):
        lines.append(f"  # --- team {team} ---")
        for svc in sorted(by_team[team], key=lambda s: s.name):
            lines += _service(svc, rng, anchors)
    return "\n".join(lines) + "\n"


def _header(n: int, seed: int, services: list[Svc], budget: int) -> list[str]:
    entries = entry_points(services)
    return [
        "# yaml-language-server: $schema=../../schemas/mesh.v1alpha1.json",
        f"# Synthetic mesh: {n} services (bench/gen_mesh.py {n} --seed {seed}).",
        "apiVersion: meshc.dev/v1alpha1",
        "kind: Mesh",
        "metadata:",
        f"  name: bench-{n}",
        "spec:",
        "  namespace: bench",
        "  proxy:",
        "    image: envoyproxy/envoy:v1.32.1",
        "    accessLog: json",
        "    resources:",
        "      requests: {cpu: 50m, memory: 64Mi}",
        "      limits: {cpu: 500m, memory: 256Mi}",
        "  etcd:",
        f"    prefix: /meshc/bench-{n}",
        "  defaults:",
        "    loadBalancer: round_robin",
        "    connectTimeout: 1s",
        "    timeout: 1s",
        "    retries:",
        "      attempts: 1",
        "      perTryTimeout: 500ms",
        "      retryOn: [5xx, unavailable, connect-failure, refused-stream, reset]",
        "      backoff: {baseInterval: 25ms, maxInterval: 250ms}",
        "    circuitBreaker: {maxConnections: 1024, maxPendingRequests: 256, maxRequests: 1024, maxRetries: 3}",
        "  analysis:",
        "    # the worst case along the deepest call chain (3 x 2 x 2 x 2 when every tier is there)",
        f"    maxRetryAmplification: {budget}",
        "    entryPoints:",
        *[f"    - {name}" for name in entries],
        "  services:",
    ]


def _service(svc: Svc, rng: random.Random, anchors: set[str]) -> list[str]:
    out = [f"  - name: {svc.name}", f"    port: {svc.port}"]
    if svc.protocol != "http" or rng.random() < 0.3:
        out.append(f"    protocol: {svc.protocol}")
    out += _load_balancer(svc)
    if svc.external:
        out += _endpoints(svc, rng)
        out += _destination_extras(svc, rng, anchors)
        return out
    out += _workload(svc, rng)
    out += _destination_extras(svc, rng, anchors)
    out += _upstreams(svc)
    return out


def _load_balancer(svc: Svc) -> list[str]:
    if svc.lb is None:
        return []
    if svc.lb == "ring_hash":
        header = "x-user-id" if svc.protocol == "http" else "x-session-id"
        return ["    loadBalancer:", "      policy: ring_hash", f"      hashOn: {{header: {header}}}"]
    if svc.lb == "maglev":
        return ["    loadBalancer: {policy: maglev, hashOn: {sourceIp: true}}"]
    return [f"    loadBalancer: {svc.lb}"]


def _endpoints(svc: Svc, rng: random.Random) -> list[str]:
    # Providers answer HTTPS: callers' sidecars originate TLS to them (no random draw: the rest of
    # the mesh stays what it was for a seed).
    out = ["    connectTimeout: 250ms", f"    tls: {{sni: {svc.name}.example.com}}", "    endpoints:"]
    base = rng.randrange(2, 250)
    for k in range(rng.choice((2, 3, 3, 4))):
        weight = f", weight: {rng.choice((1, 2, 3, 5))}" if svc.lb == "weighted" else ""
        out.append(f"    - {{address: 192.0.2.{(base + k) % 254 + 1}, port: {svc.port}{weight}}}")
    return out


def _workload(svc: Svc, rng: random.Random) -> list[str]:
    registry = "ghcr.io/acme"
    major, minor = rng.randrange(1, 6), rng.randrange(0, 20)
    stable, canary = rng.choice(((90, 10), (95, 5), (80, 20), (50, 50)))
    replicas = rng.choice((2, 2, 3, 4, 6))
    out: list[str] = []
    if rng.random() < 0.5:
        out += ["    versions:",
                (f"    - {{name: v{major}, image: {registry}/{svc.name}:{major}.{minor}.0, replicas: {replicas}, "
                 f"weight: {stable}}}"),
                (f"    - {{name: v{major + 1}, image: {registry}/{svc.name}:{major + 1}.0.0-rc.1, replicas: 1, "
                 f"weight: {canary}}}")]
    else:
        out += [f"    image: {registry}/{svc.name}:{major}.{minor}.0", f"    replicas: {replicas}",
                "    versions:",
                "    - name: stable", f"      weight: {stable}",
                "    - name: canary", f"      image: {registry}/{svc.name}:{major}.{minor + 1}.0-rc.1",
                "      replicas: 1", f"      weight: {canary}"]
    if svc.protocol != "tcp":
        path = "/grpc.health.v1.Health/Check" if svc.protocol == "grpc" else rng.choice(("/healthz", "/ready"))
        if rng.random() < 0.5:
            out.append(f"    healthCheck: {{path: {path}, interval: 5s, timeout: 1s}}")
        else:
            out += ["    healthCheck:", f"      path: {path}", "      interval: 10s", "      timeout: 2s",
                    "      unhealthyThreshold: 2"]
    if rng.random() < 0.3:
        out += ["    resources:", "      requests: {cpu: 200m, memory: 256Mi}", '      limits: {cpu: "2", memory: 1Gi}']
    if rng.random() < 0.25:
        out += ["    env:", "      LOG_LEVEL: info", f'      OTEL_SERVICE_NAME: "{svc.name}"']
    return out


def _destination_extras(svc: Svc, rng: random.Random, anchors: set[str]) -> list[str]:
    out: list[str] = []
    roll = rng.random()
    if roll < 0.25:
        if "ejection" not in anchors:
            anchors.add("ejection")
            out += ["    outlierDetection: &ejection", "      consecutive5xx: 5", "      interval: 10s",
                    "      baseEjectionTime: 30s", "      maxEjectionPercent: 50"]
        else:
            out.append("    outlierDetection: *ejection")
    elif roll < 0.40:
        out.append("    outlierDetection: {consecutive5xx: 3, consecutiveGatewayFailure: 2, interval: 5s, "
                   "baseEjectionTime: 15s, maxEjectionPercent: 34}")
    if rng.random() < 0.3:
        if "small_pool" not in anchors:
            anchors.add("small_pool")
            out.append("    circuitBreaker: &small_pool {maxConnections: 256, maxPendingRequests: 32, maxRequests: 256, "
                       "maxRetries: 2}")
        else:
            out.append("    circuitBreaker: *small_pool")
    return out


def _upstreams(svc: Svc) -> list[str]:
    if not svc.upstreams:
        return []
    out = ["    upstreams:"]
    timeout, retries, _ = ROUTE_POLICY[min(svc.tier, 3)]
    for k, callee in enumerate(svc.upstreams):
        out.append(f"    - service: {callee.name}")
        out.append(f"      localPort: {FIRST_LOCAL_PORT + k}")
        if callee.protocol == "tcp":
            continue    # timeouts and retries do not apply to tcp proxying
        if callee.name in svc.fail_fast:
            out += [f"      timeout: {FAIL_FAST_TIMEOUT[min(svc.tier, 3)]}", "      failurePolicy: fail_fast"]
            continue
        if timeout is not None:
            out.append(f"      timeout: {timeout}")
        if retries is not None:
            out.append(f"      retries: {retries}")
    return out


def generate(n: int, seed: int = 1) -> str:
    """The YAML text of a valid, warning-free mesh with n services."""
    if n < 1:
        raise ValueError("n must be at least 1")
    return render(n, seed, build_graph(n, seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("services", type=int, help="number of services (N)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = generate(args.services, args.seed)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
