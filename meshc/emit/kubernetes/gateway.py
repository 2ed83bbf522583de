"""An ingress gateway's objects: ServiceAccount (`gateway-<name>`, its identity), the ConfigMap with
its Envoy files (split and projected, as a sidecar's, when they would not fit one), a LoadBalancer
Service, and an Envoy-only Deployment locked down as sidecars are.

The TLS Secrets its listeners name (kubernetes.io/tls, written by whoever owns the certificates)
are mounted read-only, each directory whole: Kubernetes swaps a Secret volume's files by one
rename, which Envoy's watched_directory turns into a reload of the certificate without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc import kinds, render
from meshc.emit import naming
from meshc.emit.kubernetes import certificates
from meshc.emit.kubernetes.deployment import POD_SECURITY, UNPRIVILEGED_PORTS, envoy_container
from meshc.emit.kubernetes.objects import Object, config_maps, config_volume, new_object, with_config_hash
from meshc.resolve import ir


def gateway_objects(mesh: ir.Mesh, gateway: ir.Gateway, envoy_files: Mapping[str, bytes]) -> list[Object]:
    """`envoy_files`: the gateway's rendered Envoy files by file name."""
    bootstrap_hash = render.sha256(envoy_files[naming.BOOTSTRAP_FILE])[:16]
    name = naming.gateway_name(gateway.name)
    maps = config_maps(mesh, name, naming.gateway_labels(mesh, gateway.name), envoy_files)
    volume = config_volume([config_map["metadata"]["name"] for config_map in maps])
    built = [
        service_account(mesh, gateway),
        *maps,
        load_balancer(mesh, gateway),
        deployment(mesh, gateway, bootstrap_hash, volume),
    ]
    if gateway.identity is not None:   # its mesh certificate: the gateway calls services over mTLS
        cert = certificates.workload_certificate(mesh, naming.gateway_name(gateway.name), gateway.identity,
                                                 naming.gateway_labels(mesh, gateway.name))
        built += [cert] if cert is not None else []
    return kinds.in_apply_order(built)


def _new(mesh: ir.Mesh, gateway: ir.Gateway, kind: kinds.Kind, name: str | None = None) -> Object:
    return new_object(kind, name or naming.gateway_name(gateway.name), mesh.namespace,
                      naming.gateway_labels(mesh, gateway.name))


def service_account(mesh: ir.Mesh, gateway: ir.Gateway) -> Object:
    obj = _new(mesh, gateway, kinds.SERVICE_ACCOUNT)
    obj["automountServiceAccountToken"] = False
    return with_config_hash(obj)


def load_balancer(mesh: ir.Mesh, gateway: ir.Gateway) -> Object:
    obj = _new(mesh, gateway, kinds.SERVICE)
    obj["spec"] = {
        "type": "LoadBalancer",
        # Keep the client's address (use_remote_address in Envoy) and skip a second hop between nodes.
        "externalTrafficPolicy": "Local",
        "selector": naming.gateway_selector(gateway.name),
        "ports": [{"name": naming.gateway_port_name(li.port, li.tls_secret is not None), "protocol": "TCP",
                   "port": li.port, "targetPort": li.port} for li in gateway.listeners],
    }
    return with_config_hash(obj)


def deployment(mesh: ir.Mesh, gateway: ir.Gateway, bootstrap_hash: str, volume: dict[str, Any]) -> Object:
    """`volume`: the pod volume of its Envoy files (objects.config_volume)."""
    labels = naming.gateway_labels(mesh, gateway.name)
    obj = _new(mesh, gateway, kinds.DEPLOYMENT)
    obj["spec"] = {
        "replicas": gateway.replicas,
        "selector": {"matchLabels": naming.gateway_selector(gateway.name)},
        "template": {
            "metadata": {"labels": dict(labels), "annotations": {
                naming.BOOTSTRAP_HASH_ANNOTATION: bootstrap_hash,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(mesh.proxy.stats_port),
                "prometheus.io/path": naming.SIDECAR_METRICS_PATH,
            }},
            "spec": _pod_spec(mesh, gateway, volume),
        },
    }
    return with_config_hash(obj)


def _pod_spec(mesh: ir.Mesh, gateway: ir.Gateway, volume: dict[str, Any]) -> dict[str, Any]:
    name = naming.gateway_name(gateway.name)
    secrets = sorted({li.tls_secret for li in gateway.listeners if li.tls_secret is not None})
    return {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Envoy binds 80 and 443 without a capability (UNPRIVILEGED_PORTS).
        "securityContext": {**POD_SECURITY, "sysctls": [UNPRIVILEGED_PORTS]},
        "containers": [_envoy_container(mesh, gateway, secrets)],
        "volumes": [
            volume,
            {"name": naming.SIDECAR_TMP_VOLUME, "emptyDir": {}},
            *({"name": naming.gateway_tls_volume(s), "secret": {"secretName": s}} for s in secrets),
            *([{"name": naming.SIDECAR_TLS_VOLUME, "secret": {"secretName": naming.certificate_secret_name(name)}}]
              if gateway.identity is not None else []),
        ],
    }


def _envoy_container(mesh: ir.Mesh, gateway: ir.Gateway, secrets: list[str]) -> dict[str, Any]:
    proxy = mesh.proxy
    ports = [{"name": naming.gateway_port_name(li.port, li.tls_secret is not None), "containerPort": li.port,
              "protocol": "TCP"} for li in gateway.listeners]
    ports.append({"name": naming.SIDECAR_STATS_PORT_NAME, "containerPort": proxy.stats_port, "protocol": "TCP"})
    mounts = [{"name": naming.gateway_tls_volume(s),
               "mountPath": naming.GATEWAY_TLS_DIR.replace(naming.SECRET_PLACEHOLDER, s), "readOnly": True}
              for s in secrets]
    if gateway.identity is not None:
        mounts.append({"name": naming.SIDECAR_TLS_VOLUME, "mountPath": naming.DEFAULT_TLS_DIR, "readOnly": True})
    return envoy_container(proxy, ports, mounts)
