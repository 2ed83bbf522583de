"""Kubernetes emitter: the Namespace, every deployed service's objects in apply order (one file per
service), and the kustomization listing the files, so `kubectl apply -k OUT/kubernetes` works."""

from __future__ import annotations

from collections.abc import Mapping

from meshc import kinds, render
from meshc.emit import Documents, DocumentStream, naming
from meshc.emit.kubernetes import certificates, objects
from meshc.emit.kubernetes.autoscaler import autoscaler
from meshc.emit.kubernetes.dependencies import external_dependencies
from meshc.emit.kubernetes.deployment import deployment
from meshc.emit.kubernetes.disruption import disruption_budget
from meshc.emit.kubernetes.gateway import gateway_objects
from meshc.emit.kubernetes.network_policy import network_policy
from meshc.emit.kubernetes.objects import CONFIG_MAP_MAX_BYTES, Object, oversized_config_maps
from meshc.resolve import ir

__all__ = ["CONFIG_MAP_MAX_BYTES", "emit", "external_dependencies", "gateway_objects", "iter_documents",
           "mesh_documents", "oversized_config_maps", "service_objects"]


def emit(mesh: ir.Mesh, sidecar_files: Mapping[str, Mapping[str, bytes]]) -> Documents:
    """`sidecar_files`: per deployed service (and per gateway, by `gateway-<name>`), its rendered
    Envoy files (bootstrap, cds, lds, ...)."""
    return dict(iter_documents(mesh, sidecar_files))


def iter_documents(mesh: ir.Mesh, sidecar_files: Mapping[str, Mapping[str, bytes]]) -> DocumentStream:
    """The Namespace, one file per deployed service, then the kustomization listing them."""
    whole_mesh = mesh_documents(mesh)
    yield naming.NAMESPACE_PATH, whole_mesh[naming.NAMESPACE_PATH]
    for service in mesh.deployed_services:
        yield naming.kubernetes_path(service.name), service_objects(mesh, service, sidecar_files[service.name])
    for gateway in mesh.gateways:
        name = naming.gateway_name(gateway.name)
        yield naming.kubernetes_path(name), gateway_objects(mesh, gateway, sidecar_files[name])
    yield naming.KUSTOMIZATION_PATH, whole_mesh[naming.KUSTOMIZATION_PATH]


def mesh_documents(mesh: ir.Mesh) -> Documents:
    """The files that are not any one service's: namespace.yaml (the Namespace, and the mesh's
    cert-manager Issuer under mTLS), and kustomization.yaml listing it, every service's file and
    every gateway's (in apply order: the namespace first)."""
    paths = [naming.NAMESPACE_PATH, *(naming.kubernetes_path(s.name) for s in mesh.deployed_services),
             *(naming.kubernetes_path(naming.gateway_name(g.name)) for g in mesh.gateways)]
    issuer = certificates.issuer(mesh)
    return {
        naming.NAMESPACE_PATH: [objects.namespace(mesh), *([issuer] if issuer else [])],
        naming.KUSTOMIZATION_PATH: [objects.kustomization(paths)],
    }


def service_objects(mesh: ir.Mesh, service: ir.Service, sidecar_files: Mapping[str, bytes]) -> list[Object]:
    bootstrap_hash = render.sha256(sidecar_files[naming.BOOTSTRAP_FILE])[:16]
    config_maps = objects.config_maps(mesh, service.name, naming.service_labels(mesh, service.name), sidecar_files)
    volume = objects.config_volume([config_map["metadata"]["name"] for config_map in config_maps])
    built = [
        objects.service_account(mesh, service),
        *config_maps,
        *(deployment(mesh, service, v, bootstrap_hash, volume) for v in service.versions),
    ]
    if service.port is not None:    # a client-only service takes no calls: no Services
        built.append(objects.cluster_service(mesh, service))
        built += [objects.headless_service(mesh, service, v) for v in service.versions]
    built += [autoscaler(mesh, service, v, v.autoscaling) for v in service.versions if v.autoscaling]
    built += [disruption_budget(mesh, service, v, v.disruption_budget) for v in service.versions
              if v.disruption_budget]
    built += [obj for obj in (certificates.certificate(mesh, service), network_policy(mesh, service)) if obj]
    return kinds.in_apply_order(built)
