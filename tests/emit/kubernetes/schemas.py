"""Strict validation of Kubernetes objects against the real OpenAPI schemas (kubernetes-validate).

kubernetes_validate.validate() re-reads and re-compiles the schemas on every call (~23 ms per
object); here each (version, apiVersion, kind) validator is built once and reused (~0.3 ms).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
from packaging.version import Version
from referencing import Registry, Resource

SCHEMA_ROOT = "kubernetes-json-schema"


def bundled_versions() -> list[str]:
    """Kubernetes versions whose strict schemas kubernetes-validate ships, oldest first ("1.25.0", ...)."""
    return sorted(set(kv.all_versions()), key=Version)


def oldest_and_newest() -> list[str]:
    versions = bundled_versions()
    return [versions[0], versions[-1]]


@functools.cache
def _load(version: str, filename: str) -> Any:
    path = resources.files("kubernetes_validate").joinpath(f"{SCHEMA_ROOT}/v{version}-local-strict/{filename}")
    return json.loads(path.read_text())


@functools.cache
def _validator(version: str, api_version: str, kind: str) -> jsonschema.protocols.Validator:
    # Same file naming as kubernetes_validate: apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = _load(version, f"{kind.lower()}-{group_version}.json")
    registry: Registry = Resource.from_contents(_load(version, "_definitions.json")) @ Registry()
    registry = Resource.from_contents(schema) @ registry
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return validator


CERT_MANAGER_SCHEMA = Path(__file__).parents[3] / "schemas" / "cert-manager.v1.json"


@functools.cache
def _cert_manager_validator(kind: str) -> jsonschema.protocols.Validator:
    """cert-manager's kinds are CRDs, not in the Kubernetes OpenAPI: schemas/cert-manager.v1.json."""
    root = json.loads(CERT_MANAGER_SCHEMA.read_text())
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        {"$defs": root["$defs"], "$ref": f"#/$defs/{kind}"},
        format_checker=jsonschema.FormatChecker())
    return validator


def errors(obj: Mapping[str, Any], version: str) -> list[str]:
    """Every strict-schema violation of one object, as `kind/name: path: message`; empty when valid."""
    if obj["apiVersion"].startswith("cert-manager.io/"):
        validator = _cert_manager_validator(obj["kind"])
    else:
        validator = _validator(version, obj["apiVersion"], obj["kind"])
    name = f"{obj['kind']}/{obj.get('metadata', {}).get('name', '?')}"
    return [f"{name}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)]
