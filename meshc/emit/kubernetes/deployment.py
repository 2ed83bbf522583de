"""One Deployment per service version: the app container and its Envoy sidecar, locked down.

The pod template changes only when the pod must be replaced: its bootstrap-hash annotation covers
the sidecar's bootstrap alone, because cds/lds changes reach running proxies through the mounted
ConfigMap (Envoy watches the directory) without a restart.

Parts that are the same in many pods (the sidecar container, resource blocks, security contexts)
are built once and shared between objects: emitted documents are read-only.
"""

from __future__ import annotations

import functools
import posixpath
from typing import Any

from meshc import kinds
from meshc.emit import naming
from meshc.emit.kubernetes import certificates, probes
from meshc.emit.kubernetes.objects import Object, new_object, with_config_hash
from meshc.resolve import ir

# A fixed numeric non-root user: the kubelet can only enforce runAsNonRoot for images whose USER
# is numeric, and many images name theirs. 65532 is the conventional "nonroot" of distroless images.
RUN_AS_USER = 65532
TMP_DIR = "/tmp"   # the root filesystem is read-only; scratch space is an emptyDir

POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def deployment(mesh: ir.Mesh, service: ir.Service, version: ir.Version, bootstrap_hash: str) -> Object:
    labels = naming.version_labels(mesh, service.name, version)
    obj = new_object(kinds.DEPLOYMENT, naming.workload_name(service.name, version), mesh.namespace, labels)
    obj["spec"] = {
        "replicas": version.replicas,
        "selector": {"matchLabels": naming.version_selector(service.name, version)},
        "template": {
            "metadata": {"labels": dict(labels), "annotations": pod_annotations(mesh.proxy, bootstrap_hash)},
            "spec": pod_spec(mesh, service, version),
        },
    }
    return with_config_hash(obj)


def pod_annotations(proxy: ir.Proxy, bootstrap_hash: str) -> dict[str, str]:
    return {
        naming.BOOTSTRAP_HASH_ANNOTATION: bootstrap_hash,
        "kubectl.kubernetes.io/default-container": naming.APP_CONTAINER,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(proxy.stats_port),
        "prometheus.io/path": naming.SIDECAR_METRICS_PATH,
    }


def pod_spec(mesh: ir.Mesh, service: ir.Service, version: ir.Version) -> dict[str, Any]:
    return {
        "serviceAccountName": naming.service_account_name(service.name),
        "automountServiceAccountToken": False,
        # Docker-link variables (FOO_SERVICE_HOST, ...) for every Service of the namespace: noise for
        # the app, and in a large mesh enough of them to exceed the kernel's argument size limit.
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY,
        "containers": [app_container(service, version),
                       certificates.with_tls_mount(sidecar_container(mesh.proxy), service)],
        "volumes": [
            {"name": naming.SIDECAR_CONFIG_VOLUME, "configMap": {"name": naming.config_map_name(service.name)}},
            {"name": naming.SIDECAR_TMP_VOLUME, "emptyDir": {}},
            {"name": naming.APP_TMP_VOLUME, "emptyDir": {}},
            *certificates.tls_volumes(service),
        ],
    }


def app_container(service: ir.Service, version: ir.Version) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": naming.APP_CONTAINER,
        "image": version.image,
        "ports": [_port(naming.app_port_name(service.protocol), service.port)],
        "readinessProbe": probes.app_readiness(service),
        "livenessProbe": probes.app_liveness(service),
        "resources": resources(version.resources),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": naming.APP_TMP_VOLUME, "mountPath": TMP_DIR}],
    }
    env = app_env(service)
    if env:
        container["env"] = [{"name": name, "value": value} for name, value in sorted(env.items())]
    return container


def app_env(service: ir.Service) -> dict[str, str]:
    """`<UPSTREAM>_URL` for every upstream, then the service's own env (which wins on a clash).

    A service calling the same upstream on two local ports gets the lower port in `<UPSTREAM>_URL`
    (upstreams are sorted by service, then port): a variable set twice would break server-side apply.
    """
    env: dict[str, str] = {}
    for upstream in service.upstreams:
        env.setdefault(naming.upstream_env_var(upstream.service), upstream_url(upstream))
    env.update(service.env)
    return env


def upstream_url(upstream: ir.Upstream) -> str:
    scheme = "tcp" if upstream.protocol is ir.Protocol.TCP else "http"
    return f"{scheme}://127.0.0.1:{upstream.local_port}"


@functools.lru_cache(maxsize=8)
def sidecar_container(proxy: ir.Proxy) -> dict[str, Any]:
    return {
        "name": naming.SIDECAR_CONTAINER,
        "image": proxy.image,
        "args": ["-c", posixpath.join(naming.DEFAULT_CONFIG_DIR, naming.BOOTSTRAP_FILE)],
        "ports": [_port(naming.SIDECAR_INBOUND_PORT_NAME, proxy.inbound_port),
                  _port(naming.SIDECAR_STATS_PORT_NAME, proxy.stats_port)],
        "readinessProbe": probes.sidecar_readiness(proxy),
        "livenessProbe": probes.sidecar_liveness(proxy),
        "resources": resources(proxy.resources),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            # The whole directory, never subPath: kubelet swaps a ConfigMap volume's files by rename,
            # which is exactly the move Envoy's watched_directory reloads cds/lds on.
            {"name": naming.SIDECAR_CONFIG_VOLUME, "mountPath": naming.DEFAULT_CONFIG_DIR, "readOnly": True},
            {"name": naming.SIDECAR_TMP_VOLUME, "mountPath": TMP_DIR},
        ],
    }


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "containerPort": number, "protocol": "TCP"}


@functools.lru_cache(maxsize=1024)
def resources(quantities: ir.Resources) -> dict[str, dict[str, str]]:
    requests = {"cpu": quantities.cpu_request, "memory": quantities.memory_request}
    limits = {"cpu": quantities.cpu_limit, "memory": quantities.memory_limit}
    result = {"requests": _set_only(requests), "limits": _set_only(limits)}
    return {section: values for section, values in result.items() if values}


def _set_only(values: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}
