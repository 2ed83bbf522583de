"""The resource types the double serves, and the discovery documents describing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "9edcffcde5595e8a5b1a35f88c421764e575afce",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    # which validation metadata.name gets: subdomain, label (RFC 1123), dns1035 or path
    name_rule: str = "subdomain"
    has_generation: bool = False
    # top-level fields that updates of the main resource cannot change (owned by subresources)
    preserved_on_update: tuple[str, ...] = ()
    # DELETE answers with the deleted object instead of a Success Status
    returns_deleted_object: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


RBAC = "rbac.authorization.k8s.io"
CERT_MANAGER = "cert-manager.io"       # a CRD group, as an installed cert-manager serves it
NETWORKING = "networking.k8s.io"
RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 name_rule="label", preserved_on_update=("spec", "status"), returns_deleted_object=True),
    ResourceType("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",),
                 returns_deleted_object=True),
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "secret", "Secret", True),
    ResourceType("", "v1", "services", "service", "Service", True, ("svc",), ("all",),
                 name_rule="dns1035", preserved_on_update=("status",), returns_deleted_object=True),
    ResourceType("apps", "v1", "deployments", "deployment", "Deployment", True, ("deploy",), ("all",),
                 has_generation=True, preserved_on_update=("status",)),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler",
                 True, ("hpa",), ("all",), preserved_on_update=("status",)),
    ResourceType("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", True,
                 ("pdb",), has_generation=True, preserved_on_update=("status",)),
    ResourceType(NETWORKING, "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", True, ("netpol",),
                 has_generation=True),
    ResourceType(CERT_MANAGER, "v1", "issuers", "issuer", "Issuer", True, categories=("cert-manager",),
                 has_generation=True, preserved_on_update=("status",)),
    ResourceType(CERT_MANAGER, "v1", "certificates", "certificate", "Certificate", True, ("cert", "certs"),
                 ("cert-manager",), has_generation=True, preserved_on_update=("status",)),
    ResourceType(RBAC, "v1", "roles", "role", "Role", True, name_rule="path"),
    ResourceType(RBAC, "v1", "rolebindings", "rolebinding", "RoleBinding", True, name_rule="path"),
    ResourceType(RBAC, "v1", "clusterroles", "clusterrole", "ClusterRole", False, name_rule="path"),
    ResourceType(RBAC, "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", False,
                 name_rule="path"),
)
NAMESPACES = RESOURCES[0]


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def lookup(name: str) -> ResourceType:
    """A resource type by plural, `plural.group` or kind, as tests name it."""
    for resource in RESOURCES:
        if name in (resource.plural, resource.group_resource, resource.kind):
            return resource
    raise KeyError(f"the test double serves no resource called {name!r}")


def groups() -> list[str]:
    return sorted({r.group for r in RESOURCES if r.group})


def _group_version(group: str) -> dict[str, str]:
    """The one version the double serves of a group (v1, or v2 for autoscaling)."""
    version = next(r.version for r in RESOURCES if r.group == group)
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str) -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [_group_version(group)],
        "preferredVersion": _group_version(group),
    }


def api_group_list() -> dict[str, Any]:
    listed = [api_group(group) for group in groups()]
    for entry in listed:
        del entry["kind"], entry["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": served[0].api_version,
        "resources": [r.discovery_entry() for r in served],
    }
