"""The string rules behind generated Kubernetes names, shared by naming and validation.

`meshc.emit.naming` is where emitters get every name; it applies these rules to IR nodes. The
validator applies the same rules to the spec to reject meshes whose names would collide, so the
rules themselves live here, in a module that imports nothing.
"""

from __future__ import annotations

# Output files of meshc/kubernetes/ that are not `<service>.yaml`: a service may not take these names.
RESERVED_SERVICE_NAMES = frozenset({"namespace", "kustomization"})


def workload(service: str, version: str, implicit: bool) -> str:
    """Deployment name: the service name for an implicit version, else `<service>-<version>`."""
    return service if implicit else f"{service}-{version}"


def headless_service(service: str, version: str) -> str:
    """Headless Service through which Envoy (STRICT_DNS) finds one version's pods."""
    return f"{service}-{version}"


def gateway(name: str) -> str:
    """A gateway's Deployment, Service and ServiceAccount: `gateway-<name>`."""
    return f"gateway-{name}"
