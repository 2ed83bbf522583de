"""Per-resource behaviour of the registry: fields kept on update, defaults, and validation."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable
from typing import Any

from tests.k8sapi.catalog import ResourceType

Cause = dict[str, str]

SUBDOMAIN = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
NAME_RULES: dict[str, tuple[str, int, str]] = {
    "subdomain": (SUBDOMAIN, 253, (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
        "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
        f"is '{SUBDOMAIN}')")),
    "label": (LABEL, 63, (
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
        "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        f"'{LABEL}')")),
    "dns1035": (DNS1035, 63, (
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
        f"validation is '{DNS1035}')")),
}
LABEL_VALUE_HELP = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    f"'12345', regex used for validation is '{LABEL_VALUE}')")


def required(field: str) -> Cause:
    return {"reason": "FieldValueRequired", "message": "Required value", "field": field}


def invalid_value(field: str, value: Any, why: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {why}", "field": field}


# ---- fields kept across updates -------------------------------------------------------------------

def prepare_create(resource: ResourceType, obj: dict[str, Any]) -> None:
    if "status" in resource.preserved_on_update:
        obj.pop("status", None)


def prepare_update(resource: ResourceType, obj: dict[str, Any], live: dict[str, Any]) -> None:
    for field in resource.preserved_on_update:
        if field in live:
            obj[field] = copy.deepcopy(live[field])
        else:
            obj.pop(field, None)
    if resource.kind == "Service":
        spec, live_spec = obj.setdefault("spec", {}), live.get("spec", {})
        for allocated in ("clusterIP", "clusterIPs"):
            if not spec.get(allocated) and allocated in live_spec:
                spec[allocated] = copy.deepcopy(live_spec[allocated])


# ---- defaults ---------------------------------------------------------------------------------------

def set_defaults(resource: ResourceType, obj: dict[str, Any], allocate_ip: Callable[[], str]) -> None:
    defaulter = DEFAULTERS.get(resource.kind)
    if defaulter is not None:
        defaulter(obj, allocate_ip)


def _default_namespace(obj: dict[str, Any], _: Callable[[], str]) -> None:
    metadata = obj["metadata"]
    metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _default_secret(obj: dict[str, Any], _: Callable[[], str]) -> None:
    obj.setdefault("type", "Opaque")
    for key, text in obj.pop("stringData", {}).items():
        obj.setdefault("data", {})[key] = base64.b64encode(str(text).encode()).decode()


def _default_service(obj: dict[str, Any], allocate_ip: Callable[[], str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    if not spec.get("clusterIP"):
        spec["clusterIP"] = allocate_ip()
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    if spec["clusterIP"] != "None":
        spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    obj.setdefault("status", {"loadBalancer": {}})


def _default_deployment(obj: dict[str, Any], _: Callable[[], str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("strategy", {"type": "RollingUpdate"})
    if spec["strategy"].get("type") == "RollingUpdate":
        spec["strategy"].setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    obj.setdefault("status", {})


def _default_pod_spec(pod: dict[str, Any]) -> None:
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        image = str(container.get("image", ""))
        untagged = ":" not in image.rsplit("/", 1)[-1] and "@" not in image
        container.setdefault("imagePullPolicy", "Always" if untagged or image.endswith(":latest") else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
    for volume in pod.get("volumes", []):
        for source in ("secret", "configMap"):
            if source in volume:
                volume[source].setdefault("defaultMode", 0o644)


DEFAULTERS: dict[str, Callable[[dict[str, Any], Callable[[], str]], None]] = {
    "Namespace": _default_namespace,
    "Secret": _default_secret,
    "Service": _default_service,
    "Deployment": _default_deployment,
}


# ---- validation ---------------------------------------------------------------------------------

def decode_errors(resource: ResourceType, obj: dict[str, Any]) -> str | None:
    """What the server's typed decoding rejects (400), such as a number where a string belongs."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return f"json: cannot unmarshal {type(metadata).__name__} into Go struct field {resource.kind}.metadata"
    checks = [("labels", metadata.get("labels")), ("annotations", metadata.get("annotations"))]
    if resource.kind in ("ConfigMap", "Secret"):
        checks += [("data", obj.get("data")), ("stringData", obj.get("stringData"))]
    for field, mapping in checks:
        if mapping is None:
            continue
        if not isinstance(mapping, dict):
            return f"json: cannot unmarshal {type(mapping).__name__} into Go struct field of type map[string]string"
        for key, value in mapping.items():
            if not isinstance(value, str):
                return (f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                        f"{resource.kind}.{field} of type string (key {key!r})")
    return None


def name_causes(resource: ResourceType, name: str, field: str = "metadata.name") -> list[Cause]:
    if resource.name_rule == "path":
        bad = [c for c in ("/", "%") if c in name]
        return [invalid_value(field, name, f"may not contain '{bad[0]}'")] if bad else []
    pattern, limit, help_text = NAME_RULES[resource.name_rule]
    if len(name) > limit:
        return [invalid_value(field, name, f"must be no more than {limit} characters")]
    return [] if re.fullmatch(pattern, name) else [invalid_value(field, name, help_text)]


def label_causes(labels: dict[str, str]) -> list[Cause]:
    causes = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not re.fullmatch(SUBDOMAIN, prefix)) or not re.fullmatch(LABEL_VALUE, name) or not name:
            causes.append(invalid_value("metadata.labels", key, "name part " + LABEL_VALUE_HELP))
        if len(value) > 63 or not re.fullmatch(LABEL_VALUE, value):
            causes.append(invalid_value("metadata.labels", value, LABEL_VALUE_HELP))
    return causes


def validate(resource: ResourceType, obj: dict[str, Any], live: dict[str, Any] | None) -> list[Cause]:
    metadata = obj["metadata"]
    causes = name_causes(resource, metadata.get("name", "")) if metadata.get("name") else [required("metadata.name")]
    causes += label_causes(metadata.get("labels") or {})
    checker = VALIDATORS.get(resource.kind)
    return causes + (checker(obj, live) if checker else [])


def _validate_deployment(obj: dict[str, Any], live: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec", {})
    selector = spec.get("selector")
    if not selector:
        return [required("spec.selector")]
    causes: list[Cause] = []
    template_labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(template_labels.get(k) != v for k, v in wanted.items()):
        causes.append(invalid_value("spec.template.metadata.labels", template_labels,
                                    "`selector` does not match template `labels`"))
    containers = spec.get("template", {}).get("spec", {}).get("containers") or []
    if not containers:
        causes.append(required("spec.template.spec.containers"))
    for index, container in enumerate(containers):
        causes += [required(f"spec.template.spec.containers[{index}].{field}")
                   for field in ("name", "image") if not container.get(field)]
    if live is not None and live.get("spec", {}).get("selector") != selector:
        causes.append(invalid_value("spec.selector", selector, "field is immutable"))
    return causes


def _validate_service(obj: dict[str, Any], live: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec", {})
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None" and spec.get("type", "ClusterIP") != "ExternalName":
        return [required("spec.ports")]
    causes: list[Cause] = []
    for index, port in enumerate(ports):
        if not isinstance(port.get("port"), int) or not 0 < port["port"] < 65536:
            causes.append(required(f"spec.ports[{index}].port"))
        if len(ports) > 1 and not port.get("name"):
            causes.append(required(f"spec.ports[{index}].name"))
    live_ip = (live or {}).get("spec", {}).get("clusterIP")
    if live_ip and spec.get("clusterIP") not in (None, "", live_ip):
        causes.append(invalid_value("spec.clusterIPs[0]", spec["clusterIP"], "may not change once set"))
    return causes


VALIDATORS: dict[str, Callable[[dict[str, Any], dict[str, Any] | None], list[Cause]]] = {
    "Deployment": _validate_deployment,
    "Service": _validate_service,
}
