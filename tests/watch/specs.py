"""mesh.yaml texts for the watch tests: N services, any of them with its own image tag or replicas."""

from __future__ import annotations

from collections.abc import Mapping

MESH = "demo"
PREFIX = f"/meshc/{MESH}"
NAMESPACE = MESH
SPEC_PATH = "mesh.yaml"

BROKEN_SPEC = """apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata:
  name: demo
spec:
  services:
  - name: svc-00
    port: not-a-port
    upstreams:
    - {service: nowhere, localPort: 9001}
"""


def service_name(index: int) -> str:
    return f"svc-{index:02d}"


def mesh_spec(services: int = 3, *, tags: Mapping[str, str] | None = None,
              replicas: Mapping[str, int] | None = None, comment: str = "") -> str:
    """A valid, warning-free spec; `tags`/`replicas` change single services (a one-service commit)."""
    tags = tags or {}
    replicas = replicas or {}
    lines = [f"# {comment}" if comment else "# the watch tests' mesh",
             "apiVersion: meshc.dev/v1alpha1", "kind: Mesh", "metadata:", f"  name: {MESH}", "spec:", "  services:"]
    for index in range(services):
        name = service_name(index)
        lines += [f"  - name: {name}", f"    image: ghcr.io/acme/{name}:{tags.get(name, '1.0.0')}", "    port: 8080",
                  f"    replicas: {replicas.get(name, 1)}"]
        if index > 0:  # a star around svc-00: one hop, so no retry-amplification warning
            lines += ["    upstreams:", f"    - {{service: {service_name(0)}, localPort: 9001}}"]
    return "\n".join(lines) + "\n"
