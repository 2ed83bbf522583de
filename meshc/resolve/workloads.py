"""Workload settings of the IR (DESIGN 11): the app's environment, volumes, security, init
containers, probes, autoscaling, disruption budgets and pod settings, from the spec.

The app's environment is decided here, in one place: each upstream's address variables (its
`env` templates, or `<SERVICE>_URL`), then the service's `env`, then the version's, later ones
winning. The semantic checks reject the clashes that are not such deliberate overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshc import defaults as builtin
from meshc.diagnostics import Span
from meshc.env_templates import default_name, expand
from meshc.resolve import ir
from meshc.validate import models as spec

Path = tuple[str | int, ...]
SpanAt = Callable[..., Span]

LOCAL_HOST = "127.0.0.1"          # the app reaches every upstream through its sidecar on loopback


def upstream_env_var(service: str) -> str:
    """`CATALOG_URL` for service `catalog`: the default variable for an upstream's address."""
    return default_name(service)


def upstream_address(protocol: ir.Protocol, local_port: int) -> dict[str, str]:
    return {"host": LOCAL_HOST, "port": str(local_port), "address": f"{LOCAL_HOST}:{local_port}",
            "url": _url(protocol, local_port)}


def _url(protocol: ir.Protocol, local_port: int) -> str:
    scheme = "tcp" if protocol is ir.Protocol.TCP else "http"
    return f"{scheme}://{LOCAL_HOST}:{local_port}"


# --- environment ---------------------------------------------------------------------------

def env_var(name: str, value: object, where: Span) -> ir.EnvVar:
    if isinstance(value, spec.EnvSource):
        return ir.EnvVar(name, None, _env_source(value), where)
    return ir.EnvVar(name, str(value), None, where)


def _env_source(source: spec.EnvSource) -> ir.EnvSource:
    if source.secret_key_ref is not None:
        ref = source.secret_key_ref
        return ir.EnvSource("secretKeyRef", ref.name, ref.key, ref.optional)
    if source.config_map_key_ref is not None:
        ref = source.config_map_key_ref
        return ir.EnvSource("configMapKeyRef", ref.name, ref.key, ref.optional)
    assert source.field_ref is not None, "the semantic checks require exactly one source"
    return ir.EnvSource("fieldRef", None, source.field_ref.field_path, None)


def env_map(env: Mapping[str, object] | None, path: Path, span: SpanAt) -> dict[str, ir.EnvVar]:
    return {name: env_var(name, value, span(*path, name)) for name, value in (env or {}).items()}


def upstream_env(service: spec.Service, path: Path, upstreams: list[ir.Upstream],
                 span: SpanAt) -> dict[str, ir.EnvVar]:
    """Address variables of every upstream (`upstreams`: resolved, in the spec's order). With the
    same upstream on two local ports, the default `<SERVICE>_URL` names the lower port (a variable
    set twice would break server-side apply)."""
    found: dict[str, ir.EnvVar] = {}
    ordered = sorted(zip(range(len(upstreams)), service.upstreams, upstreams),
                     key=lambda item: (item[2].service, item[2].local_port))
    for index, written, resolved in ordered:
        if written.env is None:
            name = upstream_env_var(resolved.service)
            if name not in found:
                found[name] = ir.EnvVar(name, _url(resolved.protocol, resolved.local_port), None, resolved.span)
            continue
        values = upstream_address(resolved.protocol, resolved.local_port)
        for name, template in written.env.items():
            at = span(*path, "upstreams", index, "env", name)
            found.setdefault(name, ir.EnvVar(name, expand(template, values), None, at))
    return found


def app_env(*layers: Mapping[str, ir.EnvVar]) -> tuple[ir.EnvVar, ...]:
    merged: dict[str, ir.EnvVar] = {}
    for layer in layers:
        merged.update(layer)
    return tuple(sorted(merged.values(), key=_by_name))


def _by_name(var: ir.EnvVar) -> str:
    return var.name


# --- pod parts -----------------------------------------------------------------------------

def volumes(service: spec.Service, path: Path, span: SpanAt) -> tuple[ir.Volume, ...]:
    if not service.volumes:
        return ()
    found = [_volume(v, span(*path, "volumes", i)) for i, v in enumerate(service.volumes or ())]
    return tuple(sorted(found, key=lambda v: v.name))


def _volume(volume: spec.Volume, where: Span) -> ir.Volume:
    read_only = bool(volume.read_only)
    if volume.config_map is not None or volume.secret is not None:
        kind = "configMap" if volume.config_map is not None else "secret"
        source = volume.config_map or volume.secret
        assert source is not None
        items = tuple((item.key, item.path) for item in source.items or ())
        # Mounted Secrets and ConfigMaps are read-only in any case; say so in the mount.
        return ir.Volume(volume.name, volume.mount_path, True, kind, source.name, items, source.optional,
                         None, None, where)
    if volume.persistent_volume_claim is not None:
        claim = volume.persistent_volume_claim
        return ir.Volume(volume.name, volume.mount_path, read_only or bool(claim.read_only), "persistentVolumeClaim",
                         claim.claim_name, (), None, None, None, where)
    empty = volume.empty_dir or spec.EmptyDirSource.model_construct()
    return ir.Volume(volume.name, volume.mount_path, read_only, "emptyDir", None, (), None, empty.size_limit,
                     empty.medium, where)


_DEFAULT_SECURITY = ir.DEFAULT_APP_SECURITY
_NO_PROBES = ir.NO_PROBES
_NO_POD_SETTINGS = ir.NO_POD_SETTINGS


def security(context: spec.SecurityContext | None) -> ir.AppSecurity:
    if context is None:
        return _DEFAULT_SECURITY
    base = _DEFAULT_SECURITY
    added = context.capabilities.add if context.capabilities and context.capabilities.add else ()
    return ir.AppSecurity(
        run_as_user=base.run_as_user if context.run_as_user is None else context.run_as_user,
        run_as_group=base.run_as_group if context.run_as_group is None else context.run_as_group,
        fs_group=context.fs_group,
        read_only_root_filesystem=base.read_only_root_filesystem if context.read_only_root_filesystem is None
        else context.read_only_root_filesystem,
        added_capabilities=tuple(sorted(set(added))),
    )


def init_containers(service: spec.Service, path: Path, span: SpanAt,
                    resources: Callable[[spec.Resources | None], ir.Resources]) -> tuple[ir.InitContainer, ...]:
    if not service.init_containers:
        return ()
    found = []
    for index, container in enumerate(service.init_containers or ()):
        where = path + ("initContainers", index)
        found.append(ir.InitContainer(
            name=container.name, image=container.image,
            command=_strings(container.command), args=_strings(container.args),
            env=app_env(env_map(container.env, where + ("env",), span)),
            resources=resources(container.resources), span=span(*where),
        ))
    return tuple(found)


def probes(service: spec.Service, path: Path, span: SpanAt) -> ir.Probes:
    if service.probes is None:
        return _NO_PROBES
    where = path + ("probes",)
    return ir.Probes(
        liveness=_probe(service.probes.liveness, span(*where, "liveness")),
        readiness=_probe(service.probes.readiness, span(*where, "readiness")),
        startup=_probe(service.probes.startup, span(*where, "startup")),
    )


def _probe(probe: spec.Probe | str | None, where: Span) -> ir.ProbeChoice:
    if probe is None or isinstance(probe, str):
        return None if probe is None else ir.PROBE_OFF
    handler, port, path, scheme, grpc_service = "tcpSocket", None, None, None, None
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    if probe.http_get is not None:
        handler, port, path, scheme = "httpGet", probe.http_get.port, probe.http_get.path, probe.http_get.scheme
        headers = tuple(sorted((probe.http_get.headers or {}).items()))
    elif probe.grpc is not None:
        handler, port, grpc_service = "grpc", probe.grpc.port, probe.grpc.service
    elif probe.exec is not None:
        handler, command = "exec", tuple(probe.exec.command)
    elif probe.tcp_socket is not None:
        port = probe.tcp_socket.port
    return ir.Probe(handler, port, path, scheme, headers, grpc_service, command, probe.initial_delay_seconds,
                    probe.period_seconds, probe.timeout_seconds, probe.success_threshold, probe.failure_threshold,
                    where)


def autoscaling(service: spec.Service, path: Path, span: SpanAt) -> ir.Autoscaling | None:
    scaling = service.autoscaling
    if scaling is None:
        return None
    cpu = scaling.target_cpu_utilization
    if cpu is None and scaling.target_memory_utilization is None:
        cpu = builtin.HPA_TARGET_CPU_UTILIZATION
    return ir.Autoscaling(scaling.min_replicas, scaling.max_replicas, cpu, scaling.target_memory_utilization,
                          span(*path, "autoscaling"))


def disruption_budget(service: spec.Service, path: Path, span: SpanAt, replicas: int,
                      scaling: ir.Autoscaling | None, where: Path | None = None) -> ir.DisruptionBudget | None:
    """The service's budget; by default `maxUnavailable: 1` for a version that runs 2+ pods (one
    pod alone cannot stay available through a drain, and a budget would only block the drain)."""
    budget = service.disruption_budget
    if isinstance(budget, spec.DisruptionBudget):
        return ir.DisruptionBudget(budget.min_available, budget.max_unavailable, span(*path, "disruptionBudget"))
    least = scaling.min_replicas if scaling is not None else replicas
    if budget is None and least >= 2:   # spanned at the version (or the service without versions)
        return ir.DisruptionBudget(None, builtin.DISRUPTION_MAX_UNAVAILABLE, span(*(where or path)))
    return None


def pod(service: spec.Service) -> ir.PodSettings:
    settings = service.pod
    if settings is None:
        return _NO_POD_SETTINGS
    import orjson   # only for a pod's settings: a validate of a spec without them starts without orjson

    affinity = _as_written(settings.affinity)
    return ir.PodSettings(
        labels=_pairs(settings.labels),
        annotations=_pairs(settings.annotations),
        node_selector=_pairs(settings.node_selector),
        tolerations=tuple(ir.Toleration(t.key, t.operator, t.value, t.effect, t.toleration_seconds)
                          for t in settings.tolerations or ()),
        affinity_json=orjson.dumps(affinity, option=orjson.OPT_SORT_KEYS).decode() if affinity else None,
        topology_spread=tuple(ir.TopologySpread(t.max_skew, t.topology_key, t.when_unsatisfiable, t.min_domains)
                              for t in settings.topology_spread_constraints or ()),
        priority_class_name=settings.priority_class_name,
        image_pull_secrets=tuple(settings.image_pull_secrets or ()),
        termination_grace_period_s=settings.termination_grace_period_seconds,
    )


def _pairs(mapping: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((mapping or {}).items()))


def _strings(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def _as_written(value: Any) -> Any:
    """A part of the spec passed through to Kubernetes (pod.affinity) back as plain data under its
    spec names, without the fields left unset."""
    if hasattr(type(value), "model_fields"):   # a model, light or pydantic's (a process may have both)
        names = spec.spec_names(type(value))
        return {alias: _as_written(getattr(value, name)) for name, alias in names.items()
                if getattr(value, name) is not None}
    if isinstance(value, list):
        return [_as_written(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_written(item) for key, item in value.items()}
    return value
