"""Workload certificates through cert-manager: the mesh's Issuer, one Certificate per deployed
service (its SPIFFE ID as URI SAN, ECDSA P-256, renewed before expiry), and the hooks that mount
its Secret read-only into the sidecar container, and only there (the app never sees the key)."""

from __future__ import annotations

from typing import Any

from meshc import kinds
from meshc.durations import format_duration
from meshc.emit import naming
from meshc.emit.kubernetes.objects import Object, new_object, with_config_hash
from meshc.resolve import ir

CERT_MANAGER_GROUP = "cert-manager.io"
# What a sidecar does with its certificate: TLS server and client, signatures (ECDSA never encrypts keys).
USAGES = ["digital signature", "server auth", "client auth"]


def issuer(mesh: ir.Mesh) -> Object | None:
    """meshc's own Issuer, of kind CA, signing with the key pair in Secret meshc-ca (`meshc ca init`
    writes one); none when the spec names another issuer, or nothing needs certificates."""
    security = mesh.security
    if security is None or not security.enabled or not security.certificates.emit_issuer:
        return None
    obj = new_object(kinds.ISSUER, naming.issuer_name(), mesh.namespace, naming.mesh_labels(mesh))
    obj["spec"] = {"ca": {"secretName": naming.CA_SECRET}}
    return with_config_hash(obj)


def certificate(mesh: ir.Mesh, service: ir.Service) -> Object | None:
    if service.identity is None:
        return None
    return workload_certificate(mesh, service.name, service.identity, naming.service_labels(mesh, service.name))


def workload_certificate(mesh: ir.Mesh, workload: str, identity: ir.Identity, labels: dict[str, str]) -> Object | None:
    """The Certificate of one workload (a service's sidecars, or a gateway's Envoys)."""
    security = mesh.security
    if security is None:
        return None
    certs = security.certificates
    obj = new_object(kinds.CERTIFICATE, naming.certificate_name(workload), mesh.namespace, labels)
    obj["spec"] = {
        "secretName": naming.certificate_secret_name(workload),
        "secretTemplate": {"labels": labels},
        "uris": [identity.spiffe_id],
        "duration": format_duration(certs.duration_ms),
        "renewBefore": format_duration(certs.renew_before_ms),
        # A fresh key at every renewal: a leaked key is worth at most one certificate's lifetime.
        "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
        "usages": USAGES,
        "issuerRef": {"group": CERT_MANAGER_GROUP, "kind": certs.issuer_kind, "name": certs.issuer_name},
    }
    return with_config_hash(obj)


def tls_volumes(service: ir.Service) -> list[dict[str, Any]]:
    """The pod's volume holding the certificate Secret (tls.crt, tls.key, ca.crt)."""
    if service.identity is None:
        return []
    return [{"name": naming.SIDECAR_TLS_VOLUME,
             "secret": {"secretName": naming.certificate_secret_name(service.name)}}]


def with_tls_mount(sidecar: dict[str, Any], service: ir.Service) -> dict[str, Any]:
    """The sidecar container with the Secret mounted read-only at the TLS directory. The whole
    directory, never subPath: the kubelet renews by swapping a `..data` link, which Envoy watches."""
    if service.identity is None:
        return sidecar
    mount = {"name": naming.SIDECAR_TLS_VOLUME, "mountPath": naming.DEFAULT_TLS_DIR, "readOnly": True}
    return {**sidecar, "volumeMounts": [*sidecar["volumeMounts"], mount]}
