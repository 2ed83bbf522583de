"""The compiler's spine, top to bottom: load -> validate -> resolve -> analyze -> emit -> bundle."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from meshc import render
from meshc.analysis import analyze
from meshc.bundle import Bundle, make_bundle, render_files
from meshc.diagnostics import Diagnostic, has_errors, sorted_diagnostics
from meshc.emit import naming
from meshc.load import SpecSource, load_yaml
from meshc.resolve import ir, resolve
from meshc.validate.semantic import check_semantics
from meshc.validate.structural import check_structure


@dataclass(frozen=True)
class BuildOptions:
    config_dir: str = naming.DEFAULT_CONFIG_DIR   # where sidecars find cds/lds (the ConfigMap mount)
    # SERVICE or SERVICE/VERSION -> HOST[:PORT]: sidecars reached outside Kubernetes DNS (hosts, VMs)
    envoy_hosts: Mapping[str, str] = field(default_factory=dict)


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

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self.checked.diagnostics


def check(source: SpecSource) -> Checked:
    """Load, validate, resolve and analyze: every diagnostic the spec deserves, and the IR."""
    loaded = load_yaml(source)
    diagnostics = list(loaded.diagnostics)
    if not loaded.ok:
        return Checked(source, tuple(sorted_diagnostics(diagnostics)), None)
    model, structural = check_structure(loaded.data, loaded.positions)
    diagnostics += structural
    if model is None:
        return Checked(source, tuple(sorted_diagnostics(diagnostics)), None)
    diagnostics += check_semantics(model, loaded.positions)
    if has_errors(diagnostics):
        return Checked(source, tuple(sorted_diagnostics(diagnostics)), None)
    mesh = resolve(model, loaded.positions)
    diagnostics += analyze(mesh)
    return Checked(source, tuple(sorted_diagnostics(diagnostics)), mesh)


def emit(mesh: ir.Mesh, options: BuildOptions) -> dict[str, bytes]:
    """Every target's files. Kubernetes ConfigMaps carry the sidecar files, so Envoy goes first."""
    from meshc.emit import envoy, etcd, kubernetes  # only builds pay for the emitters

    with _no_cycle_collection():
        files = render_files(envoy.emit(mesh, options.config_dir, options.envoy_hosts))
        sidecars = _sidecar_files(mesh, files)
        files |= render_files(kubernetes.emit(mesh, sidecars))
        files |= render_files(etcd.emit(mesh))
    return files


def compile(source: SpecSource, options: BuildOptions = BuildOptions()) -> Compiled:
    checked = check(source)
    if not checked.ok or checked.mesh is None:
        return Compiled(checked, None)
    files = emit(checked.mesh, options)
    bundle = make_bundle(files, mesh=checked.mesh.name, spec_digest=render.sha256(source.data),
                         revision=source.revision)
    return Compiled(checked, bundle)


def _sidecar_files(mesh: ir.Mesh, files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    return {
        s.name: {name: files[naming.envoy_path(s.name, name)] for name in naming.ENVOY_FILES}
        for s in mesh.deployed_services
    }


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Emitting builds millions of small dicts with no reference cycle among them: Python's cycle
    collector would rescan the growing heap over and over (several times the emit time on 10,000
    services) for nothing. Reference counting still frees everything; the collector is restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
