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

# Inside a pod: names meshc gives its own containers and volumes (a service's may not take them)
APP_CONTAINER = "app"
SIDECAR_CONTAINER = "envoy"
SIDECAR_CONFIG_VOLUME = "envoy-config"
SIDECAR_TMP_VOLUME = "envoy-tmp"
APP_TMP_VOLUME = "tmp"
SIDECAR_TLS_VOLUME = "meshc-tls"
RESERVED_CONTAINERS = frozenset({APP_CONTAINER, SIDECAR_CONTAINER})
RESERVED_VOLUMES = frozenset({SIDECAR_CONFIG_VOLUME, SIDECAR_TMP_VOLUME, APP_TMP_VOLUME, SIDECAR_TLS_VOLUME})
# Pod label and annotation keys meshc writes: its own prefix, and these
RESERVED_KEY_PREFIX = "meshc.dev/"
RESERVED_POD_KEYS = frozenset({
    "app.kubernetes.io/managed-by", "app.kubernetes.io/name", "app.kubernetes.io/version",
    "kubectl.kubernetes.io/default-container", "prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path",
})


def reserved_pod_key(key: str) -> bool:
    return key.startswith(RESERVED_KEY_PREFIX) or key in RESERVED_POD_KEYS

def gateway(name: str) -> str:
    """A gateway's Deployment, Service and ServiceAccount: `gateway-<name>`."""
    return f"gateway-{name}"
