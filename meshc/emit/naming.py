"""Names of everything meshc generates, derived from the IR in this one place.

Emitters and the sync side agree on names through this module (Kubernetes objects, Envoy
clusters and listeners, etcd keys, output paths, labels); nothing else spells them.
"""

from __future__ import annotations

import posixpath

from meshc import object_names
from meshc import defaults
from meshc.defaults import ENVOY_CONFIG_DIR, MESH_ISSUER, TLS_DIR
from meshc.env_templates import default_name
from meshc.resolve import ir

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshc"
MESH_LABEL = "meshc.dev/mesh"
SERVICE_LABEL = "meshc.dev/service"
VERSION_LABEL = "meshc.dev/version"
GATEWAY_LABEL = "meshc.dev/gateway"
APP_NAME_LABEL = "app.kubernetes.io/name"
APP_VERSION_LABEL = "app.kubernetes.io/version"
CONFIG_HASH_ANNOTATION = "meshc.dev/config-hash"
BOOTSTRAP_HASH_ANNOTATION = "meshc.dev/bootstrap-hash"
FIELD_MANAGER = "meshc"

CLUSTER_DOMAIN = "cluster.local"
LOCAL_APP_CLUSTER = "local_app"
INBOUND_LISTENER = "inbound"
STATS_LISTENER = "stats"
ADMIN_CLUSTER = "envoy_admin"    # underscore: no service (a DNS label) can take this name
BOOTSTRAP_FILE = "bootstrap.yaml"
CDS_FILE = "cds.yaml"
LDS_FILE = "lds.yaml"
ENVOY_FILES = (BOOTSTRAP_FILE, CDS_FILE, LDS_FILE)
DEFAULT_CONFIG_DIR = ENVOY_CONFIG_DIR
# What the sidecar's stats listener serves (the Envoy bootstrap routes them; Kubernetes probes
# and scrapes them): readiness, and metrics for Prometheus.
SIDECAR_READY_PATH = "/ready"
SIDECAR_METRICS_PATH = "/stats/prometheus"


# --- output layout ------------------------------------------------------------------------

def envoy_path(service: str, filename: str) -> str:
    return f"envoy/{service}/{filename}"


def kubernetes_path(service: str) -> str:
    return f"kubernetes/{service}.yaml"


NAMESPACE_PATH = "kubernetes/namespace.yaml"
KUSTOMIZATION_PATH = "kubernetes/kustomization.yaml"
ETCD_SEED_PATH = "etcd/seed.json"
MANIFEST_PATH = "manifest.json"


# --- Kubernetes ---------------------------------------------------------------------------

def workload_name(service: str, version: ir.Version) -> str:
    """Deployment name: the service name for an implicit version, else `<service>-<version>`."""
    return object_names.workload(service, version.name, version.implicit)


def headless_service_name(service: str, version: ir.Version) -> str:
    """Headless Service through which Envoy (STRICT_DNS) finds one version's pods."""
    return object_names.headless_service(service, version.name)


def headless_dns_name(service: str, version: ir.Version, namespace: str) -> str:
    return f"{headless_service_name(service, version)}.{namespace}.svc.{CLUSTER_DOMAIN}"


def gateway_name(gateway: str) -> str:
    """A gateway's Deployment, Service, ServiceAccount, Envoy directory and Kubernetes file stem."""
    return object_names.gateway(gateway)


def gateway_labels(mesh: ir.Mesh, gateway: str) -> dict[str, str]:
    return {**mesh_labels(mesh), APP_NAME_LABEL: gateway_name(gateway), GATEWAY_LABEL: gateway}


def gateway_selector(gateway: str) -> dict[str, str]:
    return {GATEWAY_LABEL: gateway}


def sds_file(secret: str) -> str:
    """The file-based SDS resource naming one TLS Secret's files, beside the gateway's cds/lds."""
    return f"sds-tls-{secret}.yaml"


def config_map_name(service: str) -> str:
    return f"{service}-envoy"


def split_config_map_name(service: str, filename: str) -> str:
    """The ConfigMap holding one sidecar file on its own, when the files do not fit one ConfigMap:
    `web-envoy-lds` (never the name of another service's `<service>-envoy`, which ends in `-envoy`)."""
    return f"{config_map_name(service)}-{posixpath.splitext(filename)[0]}"


def service_account_name(service: str) -> str:
    return service


def upstream_env_var(service: str) -> str:
    """`CATALOG_URL` for service `catalog`: where the app reaches it through its sidecar (the
    resolver writes the app's environment with this rule)."""
    return default_name(service)


def mesh_labels(mesh: ir.Mesh) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, MESH_LABEL: mesh.name}


def mesh_selector(mesh_name: str) -> str:
    """Label selector matching every object this mesh manages (used to find what to prune)."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{MESH_LABEL}={mesh_name}"


def service_labels(mesh: ir.Mesh, service: str) -> dict[str, str]:
    """Labels of a service's objects that span its versions (ServiceAccount, ConfigMap, Service)."""
    return {**mesh_labels(mesh), APP_NAME_LABEL: service, SERVICE_LABEL: service}


def version_labels(mesh: ir.Mesh, service: str, version: ir.Version) -> dict[str, str]:
    """Labels of one version's objects and pods (headless Service, Deployment, pod template)."""
    return {**service_labels(mesh, service), APP_VERSION_LABEL: version.name, VERSION_LABEL: version.name}


def service_selector(service: str) -> dict[str, str]:
    """Pods of every version of a service."""
    return {SERVICE_LABEL: service}


def version_selector(service: str, version: ir.Version) -> dict[str, str]:
    """Pods of one version. A Deployment's selector is immutable: it must never select on more."""
    return {SERVICE_LABEL: service, VERSION_LABEL: version.name}


# Inside a pod: container, volume and port names (port names: at most 15 characters).
APP_CONTAINER = object_names.APP_CONTAINER
SIDECAR_CONTAINER = object_names.SIDECAR_CONTAINER
SIDECAR_CONFIG_VOLUME = object_names.SIDECAR_CONFIG_VOLUME
SIDECAR_TMP_VOLUME = object_names.SIDECAR_TMP_VOLUME
APP_TMP_VOLUME = object_names.APP_TMP_VOLUME
SIDECAR_INBOUND_PORT_NAME = "envoy-inbound"
SIDECAR_STATS_PORT_NAME = "envoy-stats"
GATEWAY_TLS_DIR = defaults.GATEWAY_TLS_DIR
SECRET_PLACEHOLDER = "{secret}"


def gateway_tls_volume(secret: str) -> str:
    return f"tls-{secret}"[:63]


def gateway_port_name(port: int, tls: bool) -> str:
    return f"{'https' if tls else 'http'}-{port}"


def app_port_name(protocol: ir.Protocol) -> str:
    """The application's port, named after its protocol: `http`, `http2`, `grpc` or `tcp`."""
    return protocol.value


# --- Envoy --------------------------------------------------------------------------------

def cluster_name(service: str, version: ir.Version | None = None) -> str:
    """One Envoy cluster per called service version (`catalog|v1`), or per service."""
    return service if version is None or version.implicit else f"{service}|{version.name}"


def cluster_variant_name(cluster: str, variant: str) -> str:
    """A second copy of a cluster in one sidecar (`payments|fail_fast`); variants contain `_`, which
    version names (DNS labels) cannot, so a variant never clashes with a version's cluster."""
    return f"{cluster}|{variant}"


def outbound_listener_name(service: str, local_port: int) -> str:
    return f"outbound|{local_port}|{service}"


def route_name(service: str) -> str:
    return f"to|{service}"


def request_route_name(service: str, route: str | None, index: int) -> str:
    """One of a service's routes in a caller's route table: `to|reviews|testers` (or its position)."""
    return f"to|{service}|{route if route is not None else index}"


def node_id(mesh: ir.Mesh, service: str) -> str:
    return f"{service}.{mesh.namespace}"


# --- etcd ---------------------------------------------------------------------------------

def etcd_service_key(prefix: str, service: str) -> str:
    return f"{prefix}/services/{service}"


def etcd_revision_key(prefix: str) -> str:
    return f"{prefix}/revision"


# --- zero trust ---------------------------------------------------------------------------

IDENTITY_SECRET = "meshc_identity"   # the sidecar's own certificate and key
TRUST_SECRET = "meshc_trust"         # the mesh CA that every peer's certificate must chain to
# File-based SDS beside cds/lds, one secret per file (Envoy takes exactly one from each source):
# each names certificate files in the TLS directory.
SDS_FILES = {IDENTITY_SECRET: "sds-identity.yaml", TRUST_SECRET: "sds-trust.yaml"}
DEFAULT_TLS_DIR = TLS_DIR
TLS_CERT_FILE = "tls.crt"        # the keys of a kubernetes.io/tls Secret as cert-manager writes it
TLS_KEY_FILE = "tls.key"
TLS_CA_FILE = "ca.crt"
SIDECAR_TLS_VOLUME = object_names.SIDECAR_TLS_VOLUME
CA_SECRET = MESH_ISSUER          # the Secret holding the mesh CA's key pair, read by meshc's Issuer
AUTHZ_STAT_PREFIX = "meshc_authz"    # RBAC shadow-rule stats: ...rbac.meshc_authz.shadow_denied


def issuer_name() -> str:
    return MESH_ISSUER


def certificate_name(service: str) -> str:
    return service


def certificate_secret_name(service: str) -> str:
    return f"{service}-tls"


def network_policy_name(service: str) -> str:
    return service


def authz_policy_name(service: str) -> str:
    """The RBAC policy of a service's inbound listener: its declared callers."""
    return f"callers-of-{service}"
