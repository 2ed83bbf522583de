"""What the sync verbs (plan, apply, watch) share: target flags, prune flags, opening targets.

targets: --kubeconfig FILE [--context NAME] | --in-cluster | --etcd URL | --output DIR, any combination.
Targets are applied in the order directory, kubernetes, etcd: etcd's `<prefix>/revision` is
written last, so it names a commit only once everything else holds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshc.commands.common import EXIT_INVALID, at_least, config_dir, long_lived_imports, usage_error
from meshc.bundle import Bundle
from meshc.sync.engine import DEFAULT_PRUNE_LIMIT
from meshc.sync.target import PermanentError, SyncError, Target, TransientError

if TYPE_CHECKING:
    from meshc.load import SpecSource
    from meshc.load.git import GitSpecReader
    from meshc.pipeline import BuildOptions, Checked, Compiled
    from meshc.sync.etcd_client import EtcdAccess
    from meshc.sync.target import MeshIdentity

EXIT_CHANGES = 3   # `plan --detailed-exitcode`: changes pending (2 is taken by usage/IO errors)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("targets (any combination)")
    group.add_argument("--kubeconfig", metavar="FILE", help="sync Kubernetes objects to the cluster of this kubeconfig")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current context)")
    group.add_argument("--in-cluster", action="store_true",
                       help="sync Kubernetes objects using the pod's service account")
    group.add_argument("--etcd", metavar="URL", help="sync service records to etcd, e.g. http://127.0.0.1:2379")
    group.add_argument("--etcd-cacert", "--etcd-ca", dest="etcd_cacert", metavar="FILE",
                       help="CA certificate to verify an https etcd")
    group.add_argument("--etcd-cert", metavar="FILE", help="client certificate for etcd (with --etcd-key)")
    group.add_argument("--etcd-key", metavar="FILE", help="client key for etcd (with --etcd-cert)")
    group.add_argument("--etcd-user", metavar="NAME",
                       help="authenticate to etcd as NAME; the password comes from $MESHC_ETCD_PASSWORD or "
                       "--etcd-password-file (never from a flag value)")
    group.add_argument("--etcd-password-file", metavar="FILE", help="the etcd password, on the first line of FILE")
    group.add_argument("--etcd-max-txn-ops", type=at_least(4), default=128, metavar="N",
                       help="operations per etcd transaction, at most etcd's --max-txn-ops (default 128)")
    group.add_argument("--etcd-max-txn-bytes", type=at_least(4096), default=1024 * 1024, metavar="BYTES",
                       help="bytes per etcd transaction, below etcd's --max-request-bytes (default 1 MiB; "
                       "etcd's default limit is 1.5 MiB)")
    group.add_argument("--output", metavar="DIR", help="keep DIR equal to the compiled files (Envoy on plain hosts)")
    group.add_argument("--no-drift", dest="detect_drift", action="store_false",
                       help="trust config hashes only; do not compare live fields meshc sets")


def add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pruning")
    group.add_argument("--prune-limit", type=at_least(0), default=DEFAULT_PRUNE_LIMIT, metavar="N",
                       help=f"refuse to delete more than N objects per target at once (default {DEFAULT_PRUNE_LIMIT})")
    group.add_argument("--allow-prune-all", action="store_true",
                       help="allow deleting everything the mesh has on a target, or more than --prune-limit")
    group.add_argument("--allow-mesh-rename", action="store_true",
                       help="allow a change of metadata.name or spec.namespace while the old mesh is live: apply the "
                       "new mesh, then prune the old one (within --prune-limit)")


def add_scope_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true",
                        help="plan every object, not only those of the files that changed since the spec etcd "
                        "records as applied (finds hand edits of unchanged objects), and compile the spec afresh, "
                        "reading no compilation an earlier run kept")


@dataclass(frozen=True)
class Prepared:
    """What a sync verb plans from: the compiled commit, and with --repo the bundle of the commit
    the targets record as applied (`previous`: plan only what differs from it)."""

    compiled: Compiled
    previous: Bundle | None = None
    previous_revision: str | None = None
    kept: bool = False     # `compiled` was loaded from the compile cache: nothing to store

    @property
    def bundle(self) -> Bundle:
        if self.compiled.bundle is None:
            raise ValueError("only a spec that compiled has a bundle")
        return self.compiled.bundle


def prepare(args: argparse.Namespace, targets: list[Target]) -> Prepared | None:
    """Compile SPEC (diagnostics to stderr; None when it does not compile), and, with --etcd and
    without --full, the bundle etcd records as applied (`<prefix>/revision`: the commit with
    --repo, else the spec's digest), to plan only what differs from it. There is none when there
    is no record, it names what is being applied (a re-apply is a drift check: planned in full),
    or what it names cannot be read or compiled (with --repo) or was not kept (a spec file:
    its bytes are known only from a kept compilation, meshc.compile_cache).

    Compilations kept by earlier runs are used: the applied spec's (or the parent commit's),
    read first, from which the new one is checked and built incrementally (meshc.incremental;
    only the services whose files can differ are emitted), and the new spec's own (a `plan` kept
    it) only when the incremental check cannot be made: one large entry read instead of two.
    --full reads nothing kept."""
    if getattr(args, "repo", None):
        return _prepare_commit(args, targets)
    if args.etcd and not getattr(args, "full", False):
        return _prepare_file(args, targets)
    compiled = compile_bundle(args)
    return Prepared(compiled) if compiled is not None else None


def _prepare_file(args: argparse.Namespace, targets: list[Target]) -> Prepared | None:
    """prepare() for a spec file (or standard input) synced with etcd, which records the digest
    of the spec it holds: the kept compilation of the spec with that name and digest is the
    applied one."""
    from meshc import compile_cache
    from meshc.commands.common import build_options, read_source

    options = build_options(args)
    source = read_source(args)
    digest = compile_cache.spec_digest(source.data)

    def applied_entry(recorded: str | None) -> Compiled | None:
        """The kept compilation of the spec etcd records, unless that is this very spec (a re-apply)."""
        return compile_cache.load_applied(source.name, recorded, options) if recorded and recorded != digest else None

    hint, recorded = _recorded_from_header(targets, source)
    applied = applied_entry(recorded)
    made, kept, stored = _checked_or_kept(source, applied, options)
    checked = _checked(args, source, kept, made=made)
    if checked is None or checked.mesh is None:
        return None
    if hint is None or hint.rstrip("/") != checked.mesh.etcd_prefix.rstrip("/"):   # the header misled
        recorded = _recorded_revision(targets, checked.mesh.etcd_prefix)
        applied = applied_entry(recorded)
    return _prepared(checked, options, kept, applied, recorded, stored=stored)


def _prepare_commit(args: argparse.Namespace, targets: list[Target]) -> Prepared | None:
    """prepare() with --repo. The new commit is checked incrementally from its parent's kept
    compilation, else the applied commit's, when there is one (the parent is usually the applied
    commit, which is then loaded once). Without the applied commit's compilation, the new commit
    is built in full and the applied one incrementally from it."""
    from meshc import compile_cache
    from meshc.commands.common import build_options
    from meshc.load.git import GitSpecReader
    from meshc.pipeline import compile

    full = bool(getattr(args, "full", False))
    options = build_options(args)
    with GitSpecReader(args.repo) as reader:
        source = reader.read(args.rev or "HEAD", args.spec)
        start = made = kept = None
        stored = False
        if not full:
            start = _kept_parent(reader, args.spec, source, options) or _kept_applied(
                reader, args.spec, source, targets, options)
            made, kept, stored = _checked_or_kept(source, start, options)
        checked = _checked(args, source, kept, made=made)   # `start` was tried
        if checked is None or checked.mesh is None:
            return None
        recorded = None if full else _recorded_revision(targets, checked.mesh.etcd_prefix)
        applied = _read_applied(reader, args.spec, recorded) if recorded != source.revision else None
    if applied is not None and start is not None and start.checked.source.revision == applied.revision:
        base: Compiled | None = start     # the parent is the applied commit: loaded once
    else:
        base = compile_cache.load(applied, options) if applied is not None else None
    if applied is None or base is not None:
        return _prepared(checked, options, kept, base, recorded, stored=stored)
    compiled = _compiled(checked, options, kept, None)
    previous = compile(applied, options, base=compiled).bundle
    return Prepared(compiled, previous, recorded if previous is not None else None, kept=kept is not None)


def _prepared(checked: Checked, options: BuildOptions, kept: Compiled | None, applied: Compiled | None,
              recorded: str | None, *, stored: bool = False) -> Prepared:
    """The spec's compilation, planned against `applied` (the kept compilation of what etcd
    records as `recorded`) when there is one. `stored`: the cache holds an entry of the spec
    already, which was not read (nothing to store again)."""
    compiled = _compiled(checked, options, kept, applied)
    if applied is None:
        return Prepared(compiled, kept=kept is not None or stored)
    return Prepared(compiled, applied.bundle, recorded, kept=kept is not None or stored)


def _compiled(checked: Checked, options: BuildOptions, kept: Compiled | None, applied: Compiled | None) -> Compiled:
    """The spec's compilation: `kept`, else built from the applied spec's (only the services whose
    files can differ are rendered), else in full."""
    from meshc import compile_cache
    from meshc.pipeline import built

    if kept is not None:
        return kept
    if applied is not None:
        return compile_cache.build_from(checked, options, applied)
    return built(checked, options)


def _checked(args: argparse.Namespace, source: SpecSource, kept: Compiled | None,
             start: Compiled | None = None, made: Checked | None = None) -> Checked | None:
    """The check of `source` (kept by an earlier run, or made now) with every diagnostic, those
    --ignore names included (what the cache keeps); they are printed without them. None when the
    spec does not compile (or only with warnings, under --strict). With `start` (a kept
    compilation of an earlier commit of the spec), the check is made incrementally from it when
    that gives what a full check gives (meshc.incremental), else in full; `made`: that
    incremental check, made already."""
    from meshc.commands.common import checked_source, failed, reported

    if kept is not None:
        checked = kept.checked
    else:
        checked = made or _incremental_check(source, start) or checked_source(source, args)
    shown = reported(checked, args)
    if not shown.ok or failed(shown.diagnostics, args.strict):
        sys.stderr.write("meshc: the spec does not compile; nothing was planned or written\n")
        return None
    return checked


def _checked_or_kept(source: SpecSource, start: Compiled | None,
                     options: BuildOptions) -> tuple[Checked | None, Compiled | None, bool]:
    """The check of `source` made incrementally from `start` (a kept compilation of an earlier
    text of the spec); when it cannot be made, the spec's own kept compilation (a `plan` kept
    it), read only then: one large entry read instead of two. And whether the cache holds the
    spec's entry although it was not read (then it need not be stored again)."""
    from meshc import compile_cache

    made = _incremental_check(source, start)
    if made is None:
        return None, compile_cache.load(source, options), False
    return made, None, compile_cache.has(source, options)


def _incremental_check(source: SpecSource, start: Compiled | None) -> Checked | None:
    if start is None:
        return None
    from meshc.incremental import check_from

    return check_from(source, start.checked)


def _kept_parent(reader: GitSpecReader, spec: str, source: SpecSource, options: BuildOptions) -> Compiled | None:
    """The kept compilation of the spec at the commit's first parent, to check the commit
    incrementally from: usually the commit applied last (etcd's record, read only once the new
    commit is checked, names it). None when there is none."""
    from meshc import compile_cache
    from meshc.diagnostics import MeshcError

    try:
        parents = reader.parents(source.revision) if source.revision else []
        parent = reader.read(parents[0], spec) if parents else None
    except MeshcError:
        return None
    return compile_cache.load(parent, options) if parent is not None else None


def _kept_applied(reader: GitSpecReader, spec: str, source: SpecSource, targets: list[Target],
                  options: BuildOptions) -> Compiled | None:
    """The kept compilation of the commit etcd records as applied, found from the etcd prefix the
    spec's header declares (read without checking the spec): to check the commit incrementally
    from when its parent was never compiled here (several commits pushed at once). None when
    there is none."""
    from meshc import compile_cache

    recorded = _recorded_from_header(targets, source)[1]
    applied = _read_applied(reader, spec, recorded) if recorded != source.revision else None
    return compile_cache.load(applied, options) if applied is not None else None


def _recorded_from_header(targets: list[Target], source: SpecSource) -> tuple[str | None, str | None]:
    """The etcd prefix the spec's header declares (meshc.incremental.etcd_prefix_hint: read
    without checking the spec), and what the targets record as applied there; each None when
    unknown. The caller confirms the prefix once the spec is checked."""
    from meshc.incremental import etcd_prefix_hint

    prefix = etcd_prefix_hint(source)
    try:
        return prefix, _recorded_revision(targets, prefix) if prefix is not None else None
    except SyncError:   # asked again once the spec is checked, where a failure is the verb's
        return prefix, None


def _read_applied(reader: GitSpecReader, spec: str, recorded: str | None) -> SpecSource | None:
    """The spec at the commit the targets record as applied; None without one, or when that
    commit (or the spec in it) cannot be read: the plan is then made in full."""
    from meshc.diagnostics import MeshcError

    if not recorded:
        return None
    try:
        return reader.read(recorded, spec)
    except MeshcError:
        return None


def _recorded_revision(targets: list[Target], etcd_prefix: str) -> str | None:
    """The commit the targets record as applied (etcd's `<prefix>/revision`), if any."""
    for target in targets:
        ask = getattr(target, "recorded_revision_at", None)
        if ask is not None:
            recorded: str | None = ask(etcd_prefix)
            return recorded
    return None


def without_cycle_collection(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a sync verb with the cycle collector paused: one compiled commit or two in memory, a
    handful of requests and no cycle worth collecting; the collector would only rescan the IRs
    over and over (half a second at 5,000 services). What the verb leaves alive (the compiled
    specs, left to the compile cache's writer or to the exit) is frozen on the way out: the first
    collection would otherwise scan it all (a quarter of a second at 1,000 services)."""
    from meshc.commands.common import collector_paused

    with long_lived_imports():
        import meshc.pipeline  # noqa: F401 - the verb's stages, imported as long-lived objects
    with collector_paused():
        return run(args)


def remember(args: argparse.Namespace, prepared: Prepared, *results: object) -> None:
    """Keep the compiled spec for the next plan/apply against etcd (meshc.compile_cache): once
    applied, etcd names it (the commit, or the spec's digest), and the next apply plans against
    it without compiling it. Called once the verb's result is out: the entry is written by a
    process the verb does not wait for, and what the verb holds (`prepared`, its `results`) is
    left to the process's exit, also when nothing is stored."""
    if args.etcd and not prepared.kept:
        from meshc import compile_cache

        compile_cache.store_detached(prepared.compiled, prepared, *results)
    else:   # freeing the compiled specs one object at a time is work nobody sees the result of
        from meshc.commands.common import left_to_exit

        left_to_exit(prepared, *results)


def has_targets(args: argparse.Namespace) -> bool:
    return bool(args.kubeconfig or args.in_cluster or args.etcd or args.output)


def open_targets(args: argparse.Namespace) -> list[Target]:
    """The targets the flags name, in apply order. Raises MeshcError (exit 2) for bad target flags."""
    if not has_targets(args):
        raise usage_error("no target: pass --kubeconfig FILE, --in-cluster, --etcd URL and/or --output DIR")
    if args.context and not args.kubeconfig:
        raise usage_error("--context needs --kubeconfig FILE")
    if args.kubeconfig and args.in_cluster:
        raise usage_error("--kubeconfig and --in-cluster exclude each other")
    targets: list[Target] = []
    try:
        if args.output:
            from meshc.sync.directory import DirectoryTarget

            targets.append(DirectoryTarget(args.output))
        if args.kubeconfig or args.in_cluster:
            from meshc.sync.kubernetes import KubernetesTarget

            targets.append(KubernetesTarget.from_kubeconfig(args.kubeconfig, args.context, in_cluster=args.in_cluster,
                                                            detect_drift=args.detect_drift))
        if args.etcd:
            from meshc.sync.etcd import EtcdTarget

            targets.append(EtcdTarget(etcd_access(args), max_txn_ops=args.etcd_max_txn_ops,
                                      max_txn_bytes=args.etcd_max_txn_bytes))
    except SyncError as error:
        close_targets(targets)
        raise usage_error(str(error)) from None
    return targets


def etcd_access(args: argparse.Namespace) -> EtcdAccess:
    """How to reach `--etcd`: TLS files, user, and the password from the environment or a file.
    Raises PermanentError for flags that do not go together (a usage error for the verbs)."""
    from meshc.sync.etcd_client import EtcdAccess, read_password

    if args.etcd_password_file and not args.etcd_user:
        raise PermanentError("--etcd-password-file needs --etcd-user NAME")
    password = read_password(args.etcd_password_file) if args.etcd_user else None
    return EtcdAccess(args.etcd, user=args.etcd_user, password=password, ca_cert=args.etcd_cacert,
                      cert=args.etcd_cert, key=args.etcd_key)


def close_targets(targets: list[Target]) -> None:
    for target in targets:
        try:
            target.close()
        except Exception:   # closing is best effort; the verb's own outcome matters
            pass


def sync_failure(error: SyncError) -> int:
    """Print a target failure on stderr and return the exit code (1: the operation failed)."""
    kind = "transient failure, retry later" if isinstance(error, TransientError) else "failed"
    if isinstance(error, PermanentError) or isinstance(error, TransientError):
        sys.stderr.write(f"meshc: error: {error} ({kind})\n")
    else:
        sys.stderr.write(f"meshc: error: {error}\n")
    return EXIT_INVALID


def previous_meshes(args: argparse.Namespace, bundle: Bundle, applied: Bundle | None = None) -> list[MeshIdentity]:
    """The mesh applied before, to see a rename: that of `applied` (the bundle of the commit etcd
    records), else with --repo the mesh the spec declared at the parent commit(s) of the one
    applied; the targets' own records are asked by the sync."""
    if applied is not None:
        from meshc.sync.rename import identity_of

        return [identity_of(applied)]
    if not getattr(args, "repo", None):
        return []
    from meshc.diagnostics import MeshcError
    from meshc.load.git import GitSpecReader
    from meshc.sync.rename import identity_of_spec

    revision = str((bundle.manifest.get("source") or {}).get("revision") or "")
    if not revision:
        return []
    identities = []
    try:
        with GitSpecReader(args.repo) as reader:
            for parent in reader.parents(revision):
                try:
                    identity = identity_of_spec(reader.read(parent, args.spec))
                except MeshcError:      # no spec there (yet): nothing was renamed
                    continue
                if identity is not None:
                    identities.append(identity)
    except MeshcError:
        return []
    return identities


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    from meshc.commands.build import _envoy_host
    from meshc.defaults import ENVOY_CONFIG_DIR

    group = parser.add_argument_group("compiling")
    group.add_argument("--envoy-config-dir", default=ENVOY_CONFIG_DIR, metavar="DIR", type=config_dir,
                       help=f"where sidecars read cds/lds (default {ENVOY_CONFIG_DIR}, the ConfigMap mount); "
                       "{service} in DIR becomes each sidecar's name (e.g. OUT/envoy/{service} with --output OUT)")
    group.add_argument("--envoy-host", action="append", default=[], type=_envoy_host,
                       metavar="SERVICE[/VERSION]=HOST[:PORT]",
                       help="callers reach this sidecar at HOST[:PORT] instead of its Kubernetes DNS name")


def compile_bundle(args: argparse.Namespace) -> Compiled | None:
    """Compile SPEC (or --repo/--rev); diagnostics go to stderr; None when it does not compile."""
    from meshc.commands.common import compile_from_args, failed

    compiled = compile_from_args(args)
    if compiled.bundle is None or failed(compiled.diagnostics, args.strict):
        sys.stderr.write("meshc: the spec does not compile; nothing was planned or written\n")
        return None
    return compiled
