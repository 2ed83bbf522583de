"""Specs for build tests: a synthetic mesh using every feature, and reordered copies of any spec.

A reordered copy permutes everything whose order carries no meaning in mesh.yaml (services,
upstreams, versions, endpoints, env, and the keys of every mapping); a correct build of it
produces the same files as the original.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/mesh.yaml"))

_PROTOCOLS = ("http", "http", "http2", "grpc", "tcp")
_POLICIES = ("round_robin", "least_request", "random", "ring_hash", "maglev")


def example_path(name: str) -> Path:
    return ROOT / "examples" / name / "mesh.yaml"


def synthetic_spec(services: int = 24, seed: int = 7) -> dict[str, Any]:
    """A valid mesh: deployed and external services, 1-3 versions, every protocol and load
    balancer, env, health checks, resources, and up to 3 upstreams per caller, without cycles."""
    rng = random.Random(seed)
    names = [f"svc-{i:03d}" for i in range(services)]
    external = {name for i, name in enumerate(names) if i % 6 == 5}
    specs = []
    for index, name in enumerate(names):
        if name in external:
            specs.append(_external(name, rng))
            continue
        callees = names[index + 1:]
        chosen = rng.sample(callees, k=min(len(callees), rng.randint(0, 3)))
        specs.append(_deployed(name, index, chosen, rng))
    return {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "synthetic"},
        "spec": {
            "namespace": "synthetic-ns",
            "etcd": {"prefix": "/registry/synthetic"},
            "defaults": {"timeout": "20s", "retries": {"attempts": 1, "perTryTimeout": "2s"}},
            "analysis": {"maxRetryAmplification": 1_000_000},
            "services": specs,
        },
    }


def _deployed(name: str, index: int, callees: list[str], rng: random.Random) -> dict[str, Any]:
    protocol = _PROTOCOLS[index % len(_PROTOCOLS)]
    service: dict[str, Any] = {"name": name, "port": 8000 + index, "protocol": protocol}
    policy = _POLICIES[index % len(_POLICIES)]
    hashed = policy in ("ring_hash", "maglev")
    service["loadBalancer"] = {"policy": policy, "hashOn": {"sourceIp": True}} if hashed else policy
    versions = rng.randint(0, 3)
    if versions == 0:
        service |= {"image": f"registry.example/{name}:1.{index}", "replicas": rng.randint(0, 4)}
    else:
        weights = [100 // versions] * versions
        weights[0] += 100 - sum(weights)
        service["versions"] = [{"name": f"v{k + 1}", "image": f"registry.example/{name}:{k + 1}.0",
                                "replicas": rng.randint(1, 3), "weight": w} for k, w in enumerate(weights)]
    if rng.random() < 0.6:
        service["healthCheck"] = {"path": f"/{name}/health", "interval": f"{rng.randint(1, 9)}s", "timeout": "500ms"}
    if rng.random() < 0.5:
        service["env"] = {f"VAR_{k}": f"value-{k}-{index}" for k in range(rng.randint(1, 4))}
    if rng.random() < 0.4:
        service["resources"] = {"requests": {"cpu": f"{rng.randint(1, 9)}00m"}, "limits": {"memory": f"{rng.randint(1, 4)}Gi"}}
    if rng.random() < 0.3:
        service["outlierDetection"] = {"consecutive5xx": rng.randint(2, 9), "interval": "5s"}
    if rng.random() < 0.3:
        service["circuitBreaker"] = {"maxConnections": 100 * rng.randint(1, 9), "maxPendingRequests": 10}
    service["upstreams"] = [_upstream(callee, 7000 + k, rng) for k, callee in enumerate(callees)]
    return service


def _upstream(callee: str, local_port: int, rng: random.Random) -> dict[str, Any]:
    upstream: dict[str, Any] = {"service": callee, "localPort": local_port}
    roll = rng.random()
    if roll < 0.25:
        upstream["failurePolicy"] = "fail_fast"
    elif roll < 0.6:
        upstream["timeout"] = f"{rng.randint(5, 30)}s"
        upstream["retries"] = {"attempts": rng.randint(0, 3), "perTryTimeout": "1s"}
    return upstream


def _external(name: str, rng: random.Random) -> dict[str, Any]:
    count = rng.randint(1, 3)
    return {
        "name": name,
        "port": 443,
        "loadBalancer": "weighted",
        "endpoints": [{"address": f"192.0.2.{10 + k}", "port": 443, "weight": rng.randint(1, 5)} for k in range(count)],
    }


# --- reordering -----------------------------------------------------------------------------

_UNORDERED_LISTS = ("services", "upstreams", "versions", "endpoints")


def reordered(spec: Any, seed: int) -> Any:
    """A copy with every order that carries no meaning permuted."""
    rng = random.Random(seed)
    return _permute(spec, rng, parent_key=None)


def _permute(node: Any, rng: random.Random, parent_key: str | None) -> Any:
    if isinstance(node, dict):
        items = [(key, _permute(value, rng, key)) for key, value in node.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(node, list):
        items = [_permute(item, rng, None) for item in node]
        if parent_key in _UNORDERED_LISTS:
            rng.shuffle(items)
        return items
    return node


def load_spec(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dump_spec(spec: Any) -> str:
    """YAML keeping the given key order (the loader sees the permuted order)."""
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120)
