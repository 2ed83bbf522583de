"""The small Kubernetes objects (Namespace, ServiceAccount, ConfigMap, Services, Kustomization) and
the metadata every object shares: mesh labels and the config-hash annotation."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from meshc import kinds, render
from meshc.emit import naming
from meshc.resolve import ir

Object = dict[str, Any]

KUSTOMIZATION_API_VERSION = "kustomize.config.k8s.io/v1beta1"

# Service.spec.ports[].appProtocol: IANA names, or the Kubernetes-defined value for HTTP/2
# without TLS (gRPC runs over it, but meshes and gateways recognise `grpc` by name).
_APP_PROTOCOL = {
    ir.Protocol.HTTP: "http",
    ir.Protocol.HTTP2: "kubernetes.io/h2c",
    ir.Protocol.GRPC: "grpc",
    ir.Protocol.TCP: "tcp",
}


def new_object(kind: kinds.Kind, name: str, namespace: str | None, labels: Mapping[str, str]) -> Object:
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata}


def with_config_hash(obj: Object) -> Object:
    """Stamp the hash of the object's desired content, computed before the annotation exists.

    Objects carry no other metadata annotation, so "the object without its config-hash" is the
    object without `metadata.annotations`; the sync side compares this value, never recomputes it.
    """
    obj["metadata"]["annotations"] = {naming.CONFIG_HASH_ANNOTATION: render.content_hash(obj)}
    return obj


def namespace(mesh: ir.Mesh) -> Object:
    return with_config_hash(new_object(kinds.NAMESPACE, mesh.namespace, None, naming.mesh_labels(mesh)))


def service_account(mesh: ir.Mesh, service: ir.Service) -> Object:
    obj = new_object(kinds.SERVICE_ACCOUNT, naming.service_account_name(service.name), mesh.namespace,
                     naming.service_labels(mesh, service.name))
    # Pods never talk to the Kubernetes API; a mounted token would only be something to steal.
    obj["automountServiceAccountToken"] = False
    return with_config_hash(obj)


# The API server refuses a ConfigMap whose data exceeds 1 MiB (it counts the values' bytes; the
# keys are counted here too, to stay on the safe side of it).
CONFIG_MAP_MAX_BYTES = 1024 * 1024
# The sidecar files that grow with the number of upstreams: each gets a ConfigMap of its own when
# a sidecar's files do not fit one.
SPLIT_FILES = (naming.CDS_FILE, naming.LDS_FILE)


def config_map_data(workload: str, envoy_files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """An Envoy workload's files (a sidecar's, or a gateway's; `workload` names its ConfigMaps) by
    the ConfigMap that carries them (ConfigMap name -> file name -> bytes).

    Usually one ConfigMap with the files as written. When they would exceed the ConfigMap size
    limit (a service calling about 140 others or more, a gateway routing to about 200), every file
    is written compactly, each repeated block once (render.shared_file: a sixth of the bytes), and
    cds and lds get a ConfigMap each; the pod projects them all into one volume, so Envoy still
    watches one directory. Applied in name order, cds lands before the lds whose routes use its
    clusters. Any part may still be over the limit: see `oversized_config_maps`."""
    if _data_size(envoy_files) <= CONFIG_MAP_MAX_BYTES:
        return {naming.config_map_name(workload): dict(envoy_files)}
    compact = {name: render.shared_file(data) for name, data in envoy_files.items()}
    parts = {naming.config_map_name(workload): {n: d for n, d in compact.items() if n not in SPLIT_FILES}}
    for name in SPLIT_FILES:
        if name in compact:
            parts[naming.split_config_map_name(workload, name)] = {name: compact[name]}
    return parts


def oversized_config_maps(workload: str, envoy_files: Mapping[str, bytes]) -> dict[str, int]:
    """The ConfigMaps of an Envoy workload that would still exceed the size limit, with their sizes."""
    parts = config_map_data(workload, envoy_files)
    return {name: size for name, files in parts.items() if (size := _data_size(files)) > CONFIG_MAP_MAX_BYTES}


def _data_size(files: Mapping[str, bytes]) -> int:
    return sum(len(name) + len(data) for name, data in files.items())


def config_maps(mesh: ir.Mesh, workload: str, labels: Mapping[str, str],
                envoy_files: Mapping[str, bytes]) -> list[Object]:
    """An Envoy workload's files, mounted at the config directory (bootstrap, cds, lds; sds with
    mTLS): one ConfigMap, or the parts of `config_map_data`."""
    return [_config_map(mesh, name, labels, files) for name, files in config_map_data(workload, envoy_files).items()]


def _config_map(mesh: ir.Mesh, name: str, labels: Mapping[str, str], files: Mapping[str, bytes]) -> Object:
    obj = new_object(kinds.CONFIG_MAP, name, mesh.namespace, labels)
    # Escaped once, for the config hash and the rendered file alike: most of a build's bytes.
    obj["data"] = {filename: render.encoded_text(data.decode("utf-8")) for filename, data in sorted(files.items())}
    return with_config_hash(obj)


def config_volume(config_map_names: list[str]) -> dict[str, Any]:
    """The pod volume of the sidecar's files: its ConfigMap, or its ConfigMaps projected into one
    directory (kubelet swaps a projected volume's files atomically too, as Envoy's
    watched_directory needs)."""
    if len(config_map_names) == 1:
        return {"name": naming.SIDECAR_CONFIG_VOLUME, "configMap": {"name": config_map_names[0]}}
    return {"name": naming.SIDECAR_CONFIG_VOLUME,
            "projected": {"sources": [{"configMap": {"name": name}} for name in config_map_names]}}


def cluster_service(mesh: ir.Mesh, service: ir.Service) -> Object:
    """The ClusterIP Service on `servicePort` (default: the app's port); traffic enters through the
    sidecar's inbound port."""
    assert service.service_port is not None, "only a service with a port gets a Service"
    obj = new_object(kinds.SERVICE, service.name, mesh.namespace, naming.service_labels(mesh, service.name))
    obj["spec"] = {
        "type": "ClusterIP",
        "selector": naming.service_selector(service.name),
        "ports": [_service_port(service.protocol, service.service_port, mesh.proxy.inbound_port)],
    }
    return with_config_hash(obj)


def headless_service(mesh: ir.Mesh, service: ir.Service, version: ir.Version) -> Object:
    """One version's pod IPs in DNS: what the callers' Envoy clusters (STRICT_DNS) resolve."""
    obj = new_object(kinds.SERVICE, naming.headless_service_name(service.name, version), mesh.namespace,
                     naming.version_labels(mesh, service.name, version))
    obj["spec"] = {
        "clusterIP": "None",
        # Only ready pods are published: a pod whose sidecar or app is not ready gets no traffic.
        "publishNotReadyAddresses": False,
        "selector": naming.version_selector(service.name, version),
        "ports": [_service_port(service.protocol, mesh.proxy.inbound_port, mesh.proxy.inbound_port)],
    }
    return with_config_hash(obj)


def _service_port(protocol: ir.Protocol, port: int, target_port: int) -> dict[str, Any]:
    return {"name": naming.app_port_name(protocol), "appProtocol": _APP_PROTOCOL[protocol], "protocol": "TCP",
            "port": port, "targetPort": target_port}


def kustomization(paths: list[str]) -> Object:
    """Lists the generated files, relative to the kustomization, so `kubectl apply -k` takes them all."""
    root = posixpath.dirname(naming.KUSTOMIZATION_PATH) + "/"
    assert all(path.startswith(root) for path in paths), "every Kubernetes file sits beside the kustomization"
    return {
        "apiVersion": KUSTOMIZATION_API_VERSION,
        "kind": "Kustomization",
        "resources": [path.removeprefix(root) for path in paths],
    }
