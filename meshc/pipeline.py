"""The compiler's spine, top to bottom: load -> validate -> resolve -> analyze -> emit -> bundle."""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from meshc.analysis import analyze
from meshc.diagnostics import Diagnostic, error, has_errors, sorted_diagnostics
from meshc.emit import naming
from meshc.load import Loaded, SpecSource, load_yaml
from meshc.resolve import ir, resolve
from meshc.validate.ignore import without_ignored
from meshc.validate.semantic import check_references_raw, check_semantics
from meshc.validate.structural import check_structure

# meshc.render (and orjson) is imported where it is used: a `meshc validate` renders nothing.
if TYPE_CHECKING:   # only builds need the bundle stage: `meshc validate` starts without it
    from meshc.bundle import Bundle, Crew, FileEntry, StagedOutput, Unit

# A build forks a worker per this many deployed services (up to --jobs): below that, starting
# one costs more than it saves.
SERVICES_PER_SHARD = 100

P = ParamSpec("P")
R = TypeVar("R")


def no_cycle_collection(function: Callable[P, R]) -> Callable[P, R]:
    """Run a stage with Python's cycle collector paused.

    Compiling builds millions of small containers with no reference cycle among them (data,
    models, IR, documents); the collector would rescan the growing heap over and over for nothing
    (15-30% of a large build). Reference counting still frees everything; the collector's state is
    restored afterwards, also when stages nest."""

    @functools.wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@dataclass(frozen=True)
class BuildOptions:
    config_dir: str = naming.DEFAULT_CONFIG_DIR   # where sidecars find cds/lds (the ConfigMap mount)
    # SERVICE or SERVICE/VERSION -> HOST[:PORT]: sidecars reached outside Kubernetes DNS (hosts, VMs)
    envoy_hosts: Mapping[str, str] = field(default_factory=dict)
    tls_dir: str = naming.DEFAULT_TLS_DIR          # where sidecars read tls.crt, tls.key, ca.crt (mTLS)
    # where a gateway finds its TLS Secrets' files; `{secret}` becomes each Secret's name
    gateway_tls_dir: str = naming.GATEWAY_TLS_DIR


@dataclass(frozen=True)
class Checked:
    source: SpecSource
    diagnostics: tuple[Diagnostic, ...]
    mesh: ir.Mesh | None

    @property
    def ok(self) -> bool:
        return self.mesh is not None and not has_errors(self.diagnostics)


@dataclass(frozen=True)
class Compiled:
    checked: Checked
    bundle: Bundle | None
    options: BuildOptions | None = None   # what the bundle was built with (None: not recorded)

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self.checked.diagnostics

# Sidecars of services with at least this much fan-out (upstreams, plus one per 8 endpoints or
# versions behind them) are rendered at check time to measure their ConfigMaps: a few ms per
# hundred upstreams. Below it, each upstream would need tens of kilobytes of Envoy configuration.
# Gateways with at least this many routes are measured the same way.
SIZE_CHECK_FROM_UPSTREAMS = 32
# Records of services with at least this many entries (upstreams, endpoints, versions, allowed
# callers) are rendered to measure them; below it, a record stays far under a megabyte.
SIZE_CHECK_FROM_ENTRIES = 1000


def check_sizes(mesh: ir.Mesh, options: BuildOptions = BuildOptions(),
                only: Collection[str] | None = None) -> list[Diagnostic]:
    """Generated objects over the size limits of Kubernetes (E250) and etcd (E251), found before
    anything is written. Only services large enough to come near a limit are rendered. `only`:
    these services' objects alone (no gateway's), for an incremental check (meshc.incremental)."""
    by_name = {service.name: service for service in mesh.services}

    def fan_out(service: ir.Service) -> int:
        behind = (by_name[u.service] for u in service.upstreams if u.service in by_name)
        return len(service.upstreams) + sum(len(s.endpoints) + len(s.versions) for s in behind) // 8

    def entries(service: ir.Service) -> int:
        return (len(service.upstreams) + len(service.endpoints) + len(service.versions)
                + len(service.allowed_callers))

    def wanted(service: ir.Service) -> bool:
        return only is None or service.name in only

    sidecars = [s for s in mesh.deployed_services if wanted(s) and fan_out(s) >= SIZE_CHECK_FROM_UPSTREAMS]
    gateways = [g for g in mesh.gateways if only is None and len(g.routes) >= SIZE_CHECK_FROM_UPSTREAMS]
    records = [s for s in mesh.services if wanted(s) and entries(s) >= SIZE_CHECK_FROM_ENTRIES]
    return [*_oversized_sidecars(mesh, sidecars, options), *_oversized_gateways(mesh, gateways, options),
            *_oversized_records(mesh, records)]


def _oversized_sidecars(mesh: ir.Mesh, services: Sequence[ir.Service], options: BuildOptions) -> Iterator[Diagnostic]:
    if not services:
        return
    from meshc.emit import envoy, kubernetes
    from meshc import render

    sidecar = envoy.sidecar_emitter(mesh, options.config_dir, options.envoy_hosts, options.tls_dir)
    for service in services:
        files = {filename: render.file(docs) for filename, docs in sidecar(service).items()}
        for name, size in kubernetes.oversized_config_maps(service.name, files).items():
            yield error("E250", f"service '{service.name}' ({len(service.upstreams)} upstreams): its sidecar's "
                        f"Envoy files need a ConfigMap '{name}' of {size:,} bytes, over Kubernetes' limit of "
                        f"{kubernetes.CONFIG_MAP_MAX_BYTES:,}", service.span,
                        hint="split the service, or route its calls through fewer upstreams (a gateway service)")


def _oversized_gateways(mesh: ir.Mesh, gateways: Sequence[ir.Gateway], options: BuildOptions) -> Iterator[Diagnostic]:
    if not gateways:
        return
    from meshc.emit import envoy, kubernetes
    from meshc import render

    emitter = envoy.gateway_emitter(mesh, options.config_dir, options.envoy_hosts, options.gateway_tls_dir,
                                    options.tls_dir)
    for gateway in gateways:
        files = {filename: render.file(docs) for filename, docs in emitter(gateway).items()}
        for name, size in kubernetes.oversized_config_maps(naming.gateway_name(gateway.name), files).items():
            yield error("E250", f"gateway '{gateway.name}' ({len(gateway.routes)} routes): its Envoy files need a "
                        f"ConfigMap '{name}' of {size:,} bytes, over Kubernetes' limit of "
                        f"{kubernetes.CONFIG_MAP_MAX_BYTES:,}", gateway.span,
                        hint="split its routes between two gateways, or route whole path prefixes to fewer services")


def _oversized_records(mesh: ir.Mesh, services: Sequence[ir.Service]) -> Iterator[Diagnostic]:
    if not services:
        return
    from meshc.emit import etcd

    for service in services:
        size = etcd.record_size(mesh, service)
        if size > etcd.MAX_RECORD_BYTES:
            yield error("E251", f"service '{service.name}' has an etcd record of {size:,} bytes, more than one "
                        f"transaction of meshc carries ({etcd.MAX_RECORD_BYTES:,} bytes, under etcd's request "
                        f"limit of {etcd.MAX_REQUEST_BYTES:,}): it cannot be written",
                        service.span, hint="split the service: fewer endpoints, upstreams or callers each")


# Called with the IR as soon as the spec is resolved, before the analysis and the size checks
# (which may still find errors): `meshc build` starts its workers there.
ResolvedHook = Callable[[ir.Mesh], None]


@no_cycle_collection
def check(source: SpecSource, on_resolved: ResolvedHook | None = None) -> Checked:
    """Load, validate, resolve and analyze: every diagnostic the spec deserves, and the IR."""
    return _checked(source, load_yaml(source), on_resolved)


@no_cycle_collection
def check_loaded(source: SpecSource) -> tuple[Checked, Loaded]:
    """`check`, and the loaded document with its positions, for tools that point into the spec
    (meshc diff) without loading it twice."""
    loaded = load_yaml(source)
    return _checked(source, loaded), loaded


def _checked(source: SpecSource, loaded: Loaded, on_resolved: ResolvedHook | None = None) -> Checked:
    diagnostics = list(loaded.diagnostics)
    if loaded.data is None:     # not YAML, or not one document: nothing to validate
        return Checked(source, tuple(sorted_diagnostics(diagnostics)), None)
    model, structural = check_structure(loaded.data, loaded.positions)
    diagnostics += structural
    if model is None:   # references are still worth knowing about in the same run
        diagnostics += check_references_raw(loaded.data, loaded.positions)
        return Checked(source, tuple(sorted_diagnostics(diagnostics)), None)
    diagnostics += check_semantics(model, loaded.positions)
    if has_errors(diagnostics):
        return Checked(source, tuple(sorted_diagnostics(diagnostics)), None)
    mesh = resolve(model, loaded.positions)
    if on_resolved is not None:
        on_resolved(mesh)
    diagnostics += analyze(mesh)
    diagnostics += check_sizes(mesh)
    diagnostics = without_ignored(diagnostics, model, loaded.positions)   # spec.analysis.ignore
    return Checked(source, tuple(sorted_diagnostics(diagnostics)), mesh)


def iter_files(mesh: ir.Mesh, options: BuildOptions, only: Collection[str] | None = None,
               mesh_files: bool = True, etcd_seed: bool = True) -> Iterator[tuple[str, bytes]]:
    """Every file of the build but manifest.json, as (path, bytes), each rendered as soon as it is
    emitted so its documents can be freed: per deployed service, its sidecar's Envoy files, then
    its Kubernetes file (whose ConfigMap carries them); then each gateway's, and the files of the
    whole mesh (build_units has the same files in units that processes share).

    `only`: the files of these services alone (gateways and whole-mesh files still all), for an
    incremental build; without `mesh_files`, the services' files alone; without `etcd_seed`, all
    but etcd's seed (a caller that has it from an earlier build: carried_seed)."""
    sidecar = _sidecar_files(mesh, options)
    services = mesh.deployed_services if only is None else tuple(s for s in mesh.deployed_services if s.name in only)
    for service in services:
        yield from sidecar(service)
    if mesh_files:
        yield from _mesh_files(mesh, options, etcd_seed)


def build_units(mesh: ir.Mesh, options: BuildOptions) -> list[Unit]:
    """iter_files (all of it) in units of work that build processes take in turn (meshc.bundle.
    shards): first the whole-mesh files (gateways, namespace, kustomization, etcd: the largest
    unit, so it does not come last), then the deployed services in order, one per unit (several
    when there are more than a queue holds). The same mesh and options give the same units."""
    from meshc.bundle import MAX_UNITS

    sidecar = _sidecar_files(mesh, options)
    services = mesh.deployed_services
    per_unit = -(-len(services) // (MAX_UNITS - 1)) or 1

    def files_of(first: int) -> Unit:
        return lambda: (file for service in services[first:first + per_unit] for file in sidecar(service))

    return [functools.partial(_mesh_files, mesh, options),
            *(files_of(first) for first in range(0, len(services), per_unit))]


def _sidecar_files(mesh: ir.Mesh, options: BuildOptions) -> Callable[[ir.Service], Iterator[tuple[str, bytes]]]:
    """A deployed service's files: its sidecar's Envoy files, then its Kubernetes file (whose
    ConfigMap carries them), each rendered as soon as it is emitted."""
    from meshc.emit import envoy, kubernetes  # only builds pay for the emitters
    from meshc import render

    sidecar = envoy.sidecar_emitter(mesh, options.config_dir, options.envoy_hosts, options.tls_dir)

    def files(service: ir.Service) -> Iterator[tuple[str, bytes]]:
        envoy_files = {}
        for filename, docs in sidecar(service).items():
            envoy_files[filename] = data = render.file(docs)
            yield naming.envoy_path(service.name, filename), data
        objects = kubernetes.service_objects(mesh, service, envoy_files)
        yield naming.kubernetes_path(service.name), render.file(objects)

    return files


def _mesh_files(mesh: ir.Mesh, options: BuildOptions, etcd_seed: bool = True) -> Iterator[tuple[str, bytes]]:
    """The files that are no deployed service's: each gateway's, and the whole mesh's (without
    etcd's seed unless `etcd_seed`)."""
    from meshc.emit import envoy, etcd, kubernetes
    from meshc import render

    gateway = envoy.gateway_emitter(mesh, options.config_dir, options.envoy_hosts, options.gateway_tls_dir,
                                    options.tls_dir)
    for each in mesh.gateways:
        name = naming.gateway_name(each.name)
        gateway_files = {}
        for filename, docs in gateway(each).items():
            gateway_files[filename] = data = render.file(docs)
            yield naming.envoy_path(name, filename), data
        yield naming.kubernetes_path(name), render.file(kubernetes.gateway_objects(mesh, each, gateway_files))
    for path, docs in (kubernetes.mesh_documents(mesh) | (etcd.emit(mesh) if etcd_seed else {})).items():
        yield path, render.file(docs)


def build_workers(mesh_services: int, jobs: int) -> int:
    """Workers a build forks besides its own process, for a mesh of this many deployed services."""
    return max(1, min(jobs, mesh_services // SERVICES_PER_SHARD)) - 1


@no_cycle_collection
def build_files(mesh: ir.Mesh, options: BuildOptions = BuildOptions(),
                only: Collection[str] | None = None) -> dict[str, bytes]:
    """iter_files, kept in memory: every file but manifest.json, or those `only` selects."""
    return dict(iter_files(mesh, options, only=only))


@no_cycle_collection
def build_bundle(checked: Checked, options: BuildOptions = BuildOptions(), base: Compiled | None = None) -> Bundle:
    """Every file of a spec that checked clean, in memory (what the sync side works from).

    With `base` (an earlier `compile` with the same options), only the services whose output
    can differ from base's are emitted again (see `affected_services`); every other service's
    files are base's bytes, and their digests base's manifest entries; of etcd's seed, only the
    records of the services that changed are rendered (`carried_seed`). The result is the bundle
    a full build would make, byte for byte."""
    from meshc.bundle import make_bundle
    from meshc import render

    mesh = _checked_mesh(checked)
    old = base.checked.mesh if base is not None and base.bundle is not None and base.options == options else None
    changed = changed_services(old, mesh) if old is not None else set()
    affected = affected_services(old, mesh, changed)
    if affected is None or base is None or base.bundle is None:
        reused, files = _Reused({}, {}, {}), dict(iter_files(mesh, options))
    else:
        reused = _reusable(mesh, base.bundle, affected)
        files = affected_files(mesh, options, affected, base.bundle.files, changed) | reused.files
    return make_bundle(files, mesh=mesh.name, spec_digest=render.sha256(checked.source.data),
                       revision=checked.source.revision, external=external_dependencies(checked),
                       known=reused.known, packed=reused.packed)


def affected_services(old: ir.Mesh | None, new: ir.Mesh,
                      changed: Collection[str] | None = None) -> frozenset[str] | None:
    """The deployed services of `new` whose files may differ from those `old` gave them; None
    when every file may (a mesh-wide setting changed).

    A service's files are made from the service itself (its callers and their identities are in
    its `allowed_callers`), what callers see of the services it calls or mirrors to (`as_callee`:
    clusters, SANs, endpoints, NetworkPolicy egress), and the mesh-wide settings. Spans take no
    part in IR equality, so lines moved by an edit elsewhere change nothing. `changed`: what
    `changed_services(old, new)` gave, when the caller has it."""
    if old is None or mesh_wide(old) != mesh_wide(new):
        return None
    before = {service.name: service for service in old.services}
    after = {service.name: service for service in new.services}
    changed = changed_services(old, new) if changed is None else changed
    seen_changed = {name for name in changed
                    if name not in before or name not in after or as_callee(before[name]) != as_callee(after[name])}
    if not seen_changed:    # e.g. an image or a replica count: no caller's file says anything of it
        return frozenset(service.name for service in new.deployed_services if service.name in changed)

    def affected(service: ir.Service) -> bool:
        if service.name in changed:
            return True
        return bool(seen_changed & callees_of(service)) or bool(seen_changed & callees_of(before[service.name]))

    return frozenset(service.name for service in new.deployed_services if affected(service))


def affected_files(mesh: ir.Mesh, options: BuildOptions, affected: Collection[str], base_files: Mapping[str, bytes],
                   changed: Collection[str]) -> dict[str, bytes]:
    """The files of an incremental build that are rendered: the `affected` services' (see
    `affected_services`) and the whole mesh's, etcd's seed with the records of the services not
    in `changed` carried over from the base build's files when it can be read (`carried_seed`)."""
    seed = carried_seed(base_files, mesh, changed)
    files = dict(iter_files(mesh, options, only=affected, etcd_seed=seed is None))
    if seed is not None:
        files[naming.ETCD_SEED_PATH] = seed
    return files


def carried_seed(files: Mapping[str, bytes], mesh: ir.Mesh, changed: Collection[str]) -> bytes | None:
    """etcd's seed of `mesh`, with the records of the services not in `changed` taken from an
    earlier build's seed (in `files`) instead of rendered again: a service's record is made from
    the service itself and the mesh-wide settings, which the caller has found equal
    (`affected_services` is not None). None when that seed cannot be read for it."""
    import orjson

    from meshc.emit.etcd.seed import service_record
    from meshc import render

    try:
        kept = orjson.loads(files[naming.ETCD_SEED_PATH])
    except (KeyError, orjson.JSONDecodeError):
        return None
    if not isinstance(kept, dict) or kept.get("prefix") != mesh.etcd_prefix or not isinstance(kept.get("kvs"), dict):
        return None
    records: dict[str, object] = kept["kvs"]
    kvs = {}
    for service in mesh.services:   # in the order etcd's emitter writes them
        key = naming.etcd_service_key(mesh.etcd_prefix, service.name)
        record = records.get(key) if service.name not in changed else None
        kvs[key] = record if isinstance(record, str) else render.compact(service_record(mesh, service))
    return render.file([{"prefix": mesh.etcd_prefix, "kvs": kvs}])


def changed_services(old: ir.Mesh, new: ir.Mesh) -> set[str]:
    """The services added, removed, or different in any way but their spans. A service that is
    the same object on both sides (an incremental check keeps the base's) is not compared."""
    before = {service.name: service for service in old.services}
    after = {service.name: service for service in new.services}
    return {name for name in before.keys() | after.keys()
            if before.get(name) is not after.get(name) and before.get(name) != after.get(name)}


def mesh_wide(mesh: ir.Mesh) -> ir.Mesh:
    """The mesh without its services and gateways: what every file may depend on."""
    return dataclasses.replace(mesh, services=(), gateways=())


def callees_of(service: ir.Service) -> set[str]:
    """The services a service's files say something of: those it calls, and those it mirrors to."""
    names = {upstream.service for upstream in service.upstreams}
    names.update(route.mirror.service for upstream in service.upstreams for route in upstream.routes
                 if route.mirror is not None)
    return names


def as_callee(service: ir.Service) -> ir.Service:
    """A service without what only its own pods use (their containers, volumes, pod settings,
    its own calls and who may call it): what its callers' files are made from."""
    versions = tuple(ir.Version(v.name, v.implicit, "", 0, v.weight, _NO_RESOURCES, v.span) for v in service.versions)
    return dataclasses.replace(service, versions=versions, env=(), volumes=(), security=ir.DEFAULT_APP_SECURITY,
                               init_containers=(), probes=ir.NO_PROBES, pod=ir.NO_POD_SETTINGS, upstreams=(),
                               allowed_callers=(), rate_limit=None)


_NO_RESOURCES = ir.Resources(None, None, None, None)


def _reusable(mesh: ir.Mesh, base: Bundle, affected: frozenset[str]) -> _Reused:
    """Base's files of the deployed services that are not `affected`, with their manifest entries
    (files base keeps compressed are carried over compressed)."""
    from meshc.bundle import FileEntry, PackedFiles

    unaffected = {service.name for service in mesh.deployed_services} - affected
    entries = base.manifest.get("files") or {}
    packed_base = base.files if isinstance(base.files, PackedFiles) else None
    reused = _Reused({}, {}, {})
    for path in base.files:
        if file_owner(path) not in unaffected:
            continue
        entry = entries.get(path)
        blob = packed_base.packed(path) if packed_base is not None else None
        if entry is not None:
            reused.known[path] = FileEntry(entry["sha256"], entry["size"])
        if blob is not None and entry is not None:
            reused.packed[path] = blob
        else:
            reused.files[path] = base.files[path]
    return reused


@dataclass(frozen=True)
class _Reused:
    files: dict[str, bytes]
    known: dict[str, FileEntry]
    packed: dict[str, bytes]


def file_owner(path: str) -> str | None:
    """The name a bundle file belongs to by its path (envoy/<name>/..., kubernetes/<name>.yaml):
    a deployed service's or a gateway's own file, or a whole-mesh one (kubernetes/namespace.yaml,
    ...) named like a service; callers check the name against the services they mean. None for
    other paths (etcd/, manifest.json)."""
    if path.startswith("envoy/"):
        return path.split("/", 2)[1]
    if path.startswith("kubernetes/") and path.count("/") == 1 and path.endswith(".yaml"):
        return path[len("kubernetes/"):-len(".yaml")]
    return None


# What a caller started before `write_build`: OUT's staging directory, the workers writing into
# it, and the units of work they were given (`build_units` of the same mesh and options).
Started = tuple["StagedOutput", "Crew", "Sequence[Unit]"]


@no_cycle_collection
def write_build(checked: Checked, out: str | os.PathLike[str], options: BuildOptions = BuildOptions(),
                jobs: int = 1, started: Started | None = None,
                external: list[dict[str, object]] | None = None) -> int:
    """Build a spec that checked clean straight into OUT, atomically; the number of files written.

    Files go to a staging directory as soon as they are rendered, and are not kept: a build's
    memory does not grow with its output. With jobs > 1 and enough services, that many processes
    share the work (meshc.bundle.shards: workers are forked, so call it from a process without
    other threads). `started`: OUT's staging directory, the workers writing into it and their
    units, started (with the same options) before the check was done; the caller leaves their
    `with` blocks. `external`: `external_dependencies(checked)`, when the caller has it already.
    Raises BundleWriteError or OSError, with OUT untouched."""
    from meshc.bundle import Crew, StagedOutput
    from meshc.emit import envoy, etcd, kubernetes  # noqa: F401 - once, here, rather than in every worker

    if external is None:
        external = external_dependencies(checked)
    if started is not None:
        staged, crew, units = started
        return _write_units(checked, units, staged, crew, external)
    mesh = _checked_mesh(checked)
    units = build_units(mesh, options)
    with StagedOutput(out) as staged, Crew(staged, build_workers(len(mesh.deployed_services), jobs)) as crew:
        crew.fork(units)
        return _write_units(checked, units, staged, crew, external)


def _write_units(checked: Checked, units: Sequence[Unit], staged: StagedOutput, crew: Crew,
                 external: list[dict[str, object]]) -> int:
    from meshc.bundle import manifest
    from meshc import render

    entries = crew.write(units)
    mesh = _checked_mesh(checked)
    staged.write(naming.MANIFEST_PATH, manifest(entries, mesh=mesh.name, spec_digest=render.sha256(
        checked.source.data), revision=checked.source.revision, external=external))
    staged.commit()
    return len(entries) + 1


def external_dependencies(checked: Checked) -> list[dict[str, object]]:
    """Objects the Kubernetes manifests refer to that meshc does not create (Secrets, ConfigMaps,
    claims, ...): they must exist before the pods start."""
    from meshc.emit import kubernetes

    return kubernetes.external_dependencies(_checked_mesh(checked))


@no_cycle_collection
def compile(source: SpecSource, options: BuildOptions = BuildOptions(), base: Compiled | None = None) -> Compiled:
    """check, then build_bundle (incrementally from `base`, compiled with the same options)."""
    return built(check(source), options, base)


def built(checked: Checked, options: BuildOptions = BuildOptions(), base: Compiled | None = None) -> Compiled:
    """A check's compilation: its bundle (built incrementally from `base`), none if it failed."""
    if not checked.ok:
        return Compiled(checked, None)
    return Compiled(checked, build_bundle(checked, options, base), options)


def _checked_mesh(checked: Checked) -> ir.Mesh:
    if not checked.ok or checked.mesh is None:
        raise ValueError("only a spec that checked clean can be built")
    return checked.mesh
