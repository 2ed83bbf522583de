"""Objects the generated manifests refer to but meshc does not create: Secrets and ConfigMaps the
apps read (env sources, volumes), PersistentVolumeClaims, image pull Secrets, PriorityClasses.

They must exist before the pods can start; `meshc build` lists them in manifest.json
(`externalDependencies`) and on stderr, so a missing one is found before the rollout stalls.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshc.emit import naming
from meshc.resolve import ir

Reference = tuple[str, str]   # (kind, name)


def external_dependencies(mesh: ir.Mesh) -> list[dict[str, object]]:
    """One entry per object, sorted by kind and name, with the services that use it."""
    managed = {("ConfigMap", naming.config_map_name(s.name)) for s in mesh.deployed_services}
    users: dict[Reference, set[str]] = {}
    for service in mesh.deployed_services:
        for reference in _references(service):
            if reference not in managed:
                users.setdefault(reference, set()).add(service.name)
    return [
        {"kind": kind, "name": name, **({} if kind == "PriorityClass" else {"namespace": mesh.namespace}),
         "usedBy": sorted(users[(kind, name)])}
        for kind, name in sorted(users)
    ]


def describe(dependency: dict[str, object]) -> str:
    return f"{dependency['kind']}/{dependency['name']}"


def _references(service: ir.Service) -> Iterator[Reference]:
    variables = [v for version in service.versions for v in version.env]
    variables += [v for container in service.init_containers for v in container.env]
    for variable in variables:
        source = variable.source
        if source is not None and source.name is not None and not source.optional:
            yield ("Secret" if source.kind == "secretKeyRef" else "ConfigMap"), source.name
    for volume in service.volumes:
        if volume.source is not None and not volume.optional:
            kind = {"secret": "Secret", "configMap": "ConfigMap"}.get(volume.kind, "PersistentVolumeClaim")
            yield kind, volume.source
    for secret in service.pod.image_pull_secrets:
        yield "Secret", secret
    if service.pod.priority_class_name is not None:
        yield "PriorityClass", service.pod.priority_class_name
