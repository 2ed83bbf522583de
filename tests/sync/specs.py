"""Meshes for sync tests: N services in a call chain, compiled to a Bundle by the real pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from meshc.bundle import Bundle
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, compile

MESH = "sync"
NAMESPACE = "sync-ns"
PREFIX = "/meshc/sync"


def service_name(index: int) -> str:
    return f"svc-{index:03d}"


def chain_spec(services: int, *, replicas: Mapping[str, int] | None = None, images: Mapping[str, str] | None = None,
               drop: frozenset[str] = frozenset(), namespace: str = NAMESPACE, mtls: str = "off") -> dict[str, Any]:
    """svc-000 -> svc-001 -> ... : each service calls the next one; `drop` leaves services out.

    mTLS is off unless asked for: these tests count the core objects (test_zero_trust_sync.py
    syncs the certificates and network policies)."""
    names = [service_name(i) for i in range(services) if service_name(i) not in drop]
    entries = []
    for position, name in enumerate(names):
        entry: dict[str, Any] = {
            "name": name,
            "image": (images or {}).get(name, f"registry.example/{name}:1.0"),
            "port": 8080,
            "replicas": (replicas or {}).get(name, 1),
        }
        if position + 1 < len(names):
            entry["upstreams"] = [{"service": names[position + 1], "localPort": 9001}]
        entries.append(entry)
    return {
        "apiVersion": "meshc.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": MESH},
        "spec": {"namespace": namespace, "etcd": {"prefix": PREFIX}, "analysis": {"maxRetryAmplification": 1_000_000},
                 "security": {"mtls": mtls}, "services": entries},
    }


def bundle_of(spec: Mapping[str, Any] | str, *, revision: str | None = None,
              options: BuildOptions = BuildOptions()) -> Bundle:
    text = spec if isinstance(spec, str) else yaml.safe_dump(dict(spec), sort_keys=False)
    compiled = compile(SpecSource("mesh.yaml", text.encode(), revision=revision), options)
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    return compiled.bundle
