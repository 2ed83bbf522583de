"""One Deployment per service version: the app container and its Envoy sidecar, locked down.

The pod template changes only when the pod must be replaced: its bootstrap-hash annotation covers
the sidecar's bootstrap alone, because cds/lds changes reach running proxies through the mounted
ConfigMap (Envoy watches the directory) without a restart.

The sidecar is a native sidecar by default (an init container with `restartPolicy: Always`,
Kubernetes 1.29+): it is started and ready before the app, and stopped after it. On a rollout the
app keeps serving for `proxy.drainDuration` (a preStop sleep) while callers stop picking the pod,
then gets SIGTERM; its sidecar still carries the calls it makes while it shuts down.

Parts that are the same in many pods (the sidecar container, resource blocks, security contexts)
are built once and shared between objects: emitted documents are read-only.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Sequence
from typing import Any

import orjson

from meshc import defaults, kinds
from meshc.emit import naming
from meshc.emit.kubernetes import certificates, probes
from meshc.emit.kubernetes.objects import Object, new_object, with_config_hash
from meshc.resolve import ir

TMP_DIR = "/tmp"   # the root filesystem is read-only; scratch space is an emptyDir

CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
# What most pods share, built once (the resolver hands out these very defaults)
_DEFAULT_SECURITY = ir.DEFAULT_APP_SECURITY
_NO_POD_SETTINGS = ir.NO_POD_SETTINGS
_APP_TMP_VOLUME: dict[str, Any] = {"name": naming.APP_TMP_VOLUME, "emptyDir": {}}
_SCRATCH_VOLUMES = ({"name": naming.SIDECAR_TMP_VOLUME, "emptyDir": {}}, _APP_TMP_VOLUME)
_TMP_MOUNTS = [{"name": naming.APP_TMP_VOLUME, "mountPath": TMP_DIR}]


def deployment(mesh: ir.Mesh, service: ir.Service, version: ir.Version, bootstrap_hash: str,
               config_volume: dict[str, Any] | None = None) -> Object:
    labels = naming.version_labels(mesh, service.name, version)
    obj = new_object(kinds.DEPLOYMENT, naming.workload_name(service.name, version), mesh.namespace, labels)
    spec: dict[str, Any] = {}
    if version.autoscaling is None:
        # With an autoscaler the field is left out: server-side apply then never resets its count.
        spec["replicas"] = version.replicas
    spec["selector"] = {"matchLabels": naming.version_selector(service.name, version)}
    spec["template"] = {
        "metadata": pod_metadata(mesh, service, labels, bootstrap_hash),
        "spec": pod_spec(mesh, service, version, config_volume),
    }
    obj["spec"] = spec
    return with_config_hash(obj)


def pod_metadata(mesh: ir.Mesh, service: ir.Service, labels: dict[str, str], bootstrap_hash: str) -> dict[str, Any]:
    """The service's own pod labels and annotations, then meshc's (the checks forbid overlaps)."""
    annotations = pod_annotations(mesh.proxy, bootstrap_hash)
    if service.pod is _NO_POD_SETTINGS:
        return {"labels": dict(labels), "annotations": annotations}
    return {
        "labels": {**dict(service.pod.labels), **labels},
        "annotations": {**dict(service.pod.annotations), **annotations},
    }


def pod_annotations(proxy: ir.Proxy, bootstrap_hash: str) -> dict[str, str]:
    return {
        naming.BOOTSTRAP_HASH_ANNOTATION: bootstrap_hash,
        "kubectl.kubernetes.io/default-container": naming.APP_CONTAINER,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(proxy.stats_port),
        "prometheus.io/path": naming.SIDECAR_METRICS_PATH,
    }


def pod_spec(mesh: ir.Mesh, service: ir.Service, version: ir.Version,
             config_volume: dict[str, Any] | None = None) -> dict[str, Any]:
    """config_volume: the sidecar files' volume (objects.config_volume), when not the one ConfigMap."""
    proxy = mesh.proxy
    sidecar = certificates.with_tls_mount(sidecar_container(proxy), service)
    init = [init_container(service, version, c) for c in service.init_containers]
    containers = [app_container(service, version, proxy)]
    if proxy.native_sidecar:
        init.insert(0, sidecar)     # first: later init containers may call out through it
    else:
        containers.append(sidecar)
    pod: dict[str, Any] = {
        "serviceAccountName": naming.service_account_name(service.name),
        "automountServiceAccountToken": False,
        # Docker-link variables (FOO_SERVICE_HOST, ...) for every Service of the namespace: noise for
        # the app, and in a large mesh enough of them to exceed the kernel's argument size limit.
        "enableServiceLinks": False,
        "securityContext": pod_security(service.security),
        "terminationGracePeriodSeconds": grace_period(service, proxy),
    }
    if binds_privileged_port(service, proxy):
        pod["securityContext"] = {**pod["securityContext"], "sysctls": [UNPRIVILEGED_PORTS]}
    if init:
        pod["initContainers"] = init
    pod["containers"] = containers
    pod["volumes"] = [
        config_volume or {"name": naming.SIDECAR_CONFIG_VOLUME,
                          "configMap": {"name": naming.config_map_name(service.name)}},
        *_SCRATCH_VOLUMES,
    ]
    if service.volumes:
        if _mounts_tmp(service):
            pod["volumes"].remove(_APP_TMP_VOLUME)
        pod["volumes"] += [volume(v) for v in service.volumes]
    pod["volumes"] += certificates.tls_volumes(service)
    if service.pod is not _NO_POD_SETTINGS:
        pod.update(scheduling(service, version))
    return pod


# Containers run as a non-root user with every capability dropped (NET_BIND_SERVICE included),
# so nothing in the pod may bind a port below 1024 unless the container runtime lets any user do
# so. This namespaced sysctl, "safe" since Kubernetes 1.22 and allowed by the restricted Pod
# Security profile, lets them, in this pod only.
UNPRIVILEGED_PORTS = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
PRIVILEGED_PORTS_BELOW = 1024


def binds_privileged_port(service: ir.Service, proxy: ir.Proxy) -> bool:
    """Whether the app or its sidecar listens on a port below 1024: the app's port, the sidecar's
    inbound, stats and admin ports, or an upstream's local port."""
    ports = [service.port, proxy.inbound_port, proxy.stats_port, proxy.admin_port,
             *(upstream.local_port for upstream in service.upstreams)]
    return any(port is not None and port < PRIVILEGED_PORTS_BELOW for port in ports)


def pod_security(security: ir.AppSecurity) -> dict[str, Any]:
    return _DEFAULT_POD_SECURITY if security is _DEFAULT_SECURITY else _pod_security(security)


@functools.lru_cache(maxsize=64)
def _pod_security(security: ir.AppSecurity) -> dict[str, Any]:
    """Pod Security `restricted`: a non-root user the kubelet can verify (numeric), RuntimeDefault seccomp."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": security.run_as_user,
        "runAsGroup": security.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if security.fs_group is not None:
        context["fsGroup"] = security.fs_group
    return context


_DEFAULT_POD_SECURITY = _pod_security(_DEFAULT_SECURITY)
POD_SECURITY = _DEFAULT_POD_SECURITY      # a pod of meshc's own (a gateway's): the defaults


def grace_period(service: ir.Service, proxy: ir.Proxy) -> int:
    if service.pod.termination_grace_period_s is not None:
        return service.pod.termination_grace_period_s
    return probes.seconds(proxy.drain_ms) + defaults.APP_SHUTDOWN_S


def scheduling(service: ir.Service, version: ir.Version) -> dict[str, Any]:
    pod = service.pod
    found: dict[str, Any] = {}
    if pod.node_selector:
        found["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        found["tolerations"] = [_toleration(t) for t in pod.tolerations]
    if pod.affinity_json is not None:
        found["affinity"] = orjson.loads(pod.affinity_json)
    if pod.topology_spread:
        selector = {"matchLabels": naming.version_selector(service.name, version)}
        found["topologySpreadConstraints"] = [_spread(s, selector) for s in pod.topology_spread]
    if pod.priority_class_name is not None:
        found["priorityClassName"] = pod.priority_class_name
    if pod.image_pull_secrets:
        found["imagePullSecrets"] = [{"name": name} for name in pod.image_pull_secrets]
    return found


def _toleration(toleration: ir.Toleration) -> dict[str, Any]:
    fields = {"key": toleration.key, "operator": toleration.operator, "value": toleration.value,
              "effect": toleration.effect, "tolerationSeconds": toleration.seconds}
    return {key: value for key, value in fields.items() if value is not None}


def _spread(spread: ir.TopologySpread, selector: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"maxSkew": spread.max_skew, "topologyKey": spread.topology_key,
                             "whenUnsatisfiable": spread.when_unsatisfiable, "labelSelector": selector}
    if spread.min_domains is not None:
        found["minDomains"] = spread.min_domains
    return found


# --- the app ----------------------------------------------------------------------------------

def app_container(service: ir.Service, version: ir.Version, proxy: ir.Proxy) -> dict[str, Any]:
    container: dict[str, Any] = {"name": naming.APP_CONTAINER, "image": version.image}
    if version.command is not None:
        container["command"] = list(version.command)
    if version.args is not None:
        container["args"] = list(version.args)
    if service.port is not None:
        container["ports"] = [_port(naming.app_port_name(service.protocol), service.port)]
    if version.env:
        container["env"] = [env_var(v) for v in version.env]
    container.update(probes.app_probes(service))
    if proxy.native_sidecar and proxy.drain_ms:
        # Keep serving while the endpoints controller and the callers' DNS let go of the pod.
        container["lifecycle"] = _drain_hook(proxy.drain_ms)
    container["resources"] = resources(version.resources)
    container["securityContext"] = container_security(service.security)
    container["volumeMounts"] = app_mounts(service)
    return container


def env_var(var: ir.EnvVar) -> dict[str, Any]:
    if var.source is None:
        return {"name": var.name, "value": var.value}
    source = var.source
    if source.kind == "fieldRef":
        return {"name": var.name, "valueFrom": {"fieldRef": {"fieldPath": source.key}}}
    selector: dict[str, Any] = {"name": source.name, "key": source.key}
    if source.optional is not None:
        selector["optional"] = source.optional
    return {"name": var.name, "valueFrom": {source.kind: selector}}


@functools.lru_cache(maxsize=8)
def _drain_hook(drain_ms: int) -> dict[str, Any]:
    return {"preStop": {"sleep": {"seconds": probes.seconds(drain_ms)}}}


def container_security(security: ir.AppSecurity) -> dict[str, Any]:
    return CONTAINER_SECURITY if security is _DEFAULT_SECURITY else _container_security(security)


@functools.lru_cache(maxsize=64)
def _container_security(security: ir.AppSecurity) -> dict[str, Any]:
    if security == _DEFAULT_SECURITY:
        return CONTAINER_SECURITY
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if security.added_capabilities:
        capabilities["add"] = list(security.added_capabilities)
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": security.read_only_root_filesystem,
            "capabilities": capabilities}


def _mounts_tmp(service: ir.Service) -> bool:
    """A service volume at /tmp replaces meshc's scratch emptyDir (to size it, say)."""
    return any(v.mount_path == TMP_DIR for v in service.volumes)


def app_mounts(service: ir.Service) -> list[dict[str, Any]]:
    if not service.volumes:
        return _TMP_MOUNTS
    mounts = [] if _mounts_tmp(service) else [*_TMP_MOUNTS]
    for v in service.volumes:
        mount: dict[str, Any] = {"name": v.name, "mountPath": v.mount_path}
        if v.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return mounts


def volume(v: ir.Volume) -> dict[str, Any]:
    if v.kind == "emptyDir":
        source: dict[str, Any] = {}
        if v.size_limit is not None:
            source["sizeLimit"] = v.size_limit
        if v.medium is not None:
            source["medium"] = v.medium
    elif v.kind == "persistentVolumeClaim":
        source = {"claimName": v.source}
        if v.read_only:
            source["readOnly"] = True
    else:
        source = {"secretName" if v.kind == "secret" else "name": v.source}
        if v.items:
            source["items"] = [{"key": key, "path": path} for key, path in v.items]
        if v.optional is not None:
            source["optional"] = v.optional
    return {"name": v.name, v.kind: source}


def init_container(service: ir.Service, version: ir.Version, container: ir.InitContainer) -> dict[str, Any]:
    """Hardened like the app, with the app's volumes (to prepare them), scratch /tmp, and the app's
    environment (upstream addresses included) under its own variables."""
    found: dict[str, Any] = {"name": container.name, "image": container.image}
    if container.command is not None:
        found["command"] = list(container.command)
    if container.args is not None:
        found["args"] = list(container.args)
    env = {v.name: v for v in version.env} | {v.name: v for v in container.env}
    if env:
        found["env"] = [env_var(env[name]) for name in sorted(env)]
    found["resources"] = resources(container.resources)
    found["securityContext"] = container_security(service.security)
    found["volumeMounts"] = app_mounts(service)
    return found


# --- the sidecar ------------------------------------------------------------------------------

def envoy_container(proxy: ir.Proxy, ports: list[dict[str, Any]],
                    mounts: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Envoy reading its bootstrap from the config volume: a sidecar's, or a gateway's (which
    listens on other ports and mounts more)."""
    return {
        "name": naming.SIDECAR_CONTAINER,
        "image": proxy.image,
        "args": ["-c", posixpath.join(naming.DEFAULT_CONFIG_DIR, naming.BOOTSTRAP_FILE)],
        "ports": ports,
        "readinessProbe": probes.sidecar_readiness(proxy),
        "livenessProbe": probes.sidecar_liveness(proxy),
        "resources": resources(proxy.resources),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            # The whole directory, never subPath: kubelet swaps a ConfigMap volume's files by rename,
            # which is exactly the move Envoy's watched_directory reloads cds/lds on.
            {"name": naming.SIDECAR_CONFIG_VOLUME, "mountPath": naming.DEFAULT_CONFIG_DIR, "readOnly": True},
            {"name": naming.SIDECAR_TMP_VOLUME, "mountPath": TMP_DIR},
            *mounts,
        ],
    }


@functools.lru_cache(maxsize=8)
def sidecar_container(proxy: ir.Proxy) -> dict[str, Any]:
    container = envoy_container(proxy, [_port(naming.SIDECAR_INBOUND_PORT_NAME, proxy.inbound_port),
                                        _port(naming.SIDECAR_STATS_PORT_NAME, proxy.stats_port)])
    if proxy.native_sidecar:
        # The kubelet starts the app only once the startup probe passes: Envoy has loaded its
        # listeners, so the app's first outbound calls find them. It stops Envoy after the app.
        container["restartPolicy"] = "Always"
        container["startupProbe"] = probes.sidecar_startup(proxy)
    elif proxy.drain_ms:
        # An ordinary container is stopped together with the app: Envoy (which exits at once on
        # SIGTERM) is held back for the drain time, so the app's calls while it stops still go out.
        seconds = str(probes.seconds(proxy.drain_ms))
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", seconds]}}}
    return container


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "containerPort": number, "protocol": "TCP"}


@functools.lru_cache(maxsize=1024)
def resources(quantities: ir.Resources) -> dict[str, dict[str, str]]:
    requests = {"cpu": quantities.cpu_request, "memory": quantities.memory_request,
                "ephemeral-storage": quantities.storage_request}
    limits = {"cpu": quantities.cpu_limit, "memory": quantities.memory_limit,
              "ephemeral-storage": quantities.storage_limit}
    result = {"requests": _set_only(requests), "limits": _set_only(limits)}
    return {section: values for section, values in result.items() if values}


def _set_only(values: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}
