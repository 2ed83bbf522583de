"""`meshc watch --repo PATH|URL`: the GitOps sync loop, from the command line.

This module wires the loop (meshc.sync.watch) to the compiler (meshc.pipeline, handed in as a
compile function), the targets, the leader lock, the metrics server and the signals. The heavy
imports (gitpython, kubernetes, prometheus_client) happen in `run`, never at registration.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from meshc.commands.common import EXIT_OK, EXIT_USAGE
from meshc.commands.sync_common import (
    add_build_arguments,
    add_prune_arguments,
    add_target_arguments,
    close_targets,
    etcd_access,
    open_targets,
)
from meshc.durations import parse_duration
from meshc.load.source import SpecSource

if TYPE_CHECKING:
    from meshc.bundle import Bundle
    from meshc.diagnostics import Diagnostic
    from meshc.sync.watch import CompileFn, Watcher

NAME = "watch"
HELP = "keep targets in sync with a Git branch: compile each new commit and apply only what changed"

DEFAULT_LOCK_TTL = "15s"


def register(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("source")
    source.add_argument("--repo", required=True, metavar="PATH|URL",
                        help="a local repository (read from its object database, not its work tree) or a URL "
                        "to fetch from (mirrored in --cache-dir)")
    source.add_argument("--branch", default="main", help="the branch to follow (default: main)")
    source.add_argument("--path", default="mesh.yaml", metavar="SPEC",
                        help="the spec's path inside the repository (default: mesh.yaml)")
    source.add_argument("--interval", default="5s", type=_duration, metavar="DURATION",
                        help="how often to poll the branch and re-check drift (default: 5s)")
    source.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="where mirrors of remote repositories live (default: $XDG_CACHE_HOME/meshc/mirrors)")
    add_target_arguments(parser)
    add_prune_arguments(parser)
    add_build_arguments(parser)
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument("--once", action="store_true",
                           help="one pass, then exit: 0 when in sync, 1 when the commit is invalid or the sync failed")
    behaviour.add_argument("--no-drift-correction", dest="drift_correction", action="store_false",
                           help="re-plan and report drift, but never write it back")
    behaviour.add_argument("--drift-interval", type=_duration, metavar="DURATION",
                           help="re-plan an already applied commit this often to find drift (default: every "
                           "--interval; a cluster followed by watch streams every 10m); new commits are still "
                           "picked up every --interval")
    behaviour.add_argument("--no-watch-streams", dest="watch_events", action="store_false",
                           help="find drift on the cluster only by full plans (LISTs every --drift-interval), "
                           "not by Kubernetes watch streams")
    behaviour.add_argument("--max-backoff", default="60s", type=_duration, metavar="DURATION",
                           help="longest wait between retries of a transient failure (default: 60s)")
    behaviour.add_argument("--lock-ttl", default=DEFAULT_LOCK_TTL, type=_duration, metavar="DURATION",
                           help="lease of the leader lock in etcd (with --etcd); a dead leader is replaced "
                           f"after this long (default: {DEFAULT_LOCK_TTL})")
    behaviour.add_argument("--no-leader-election", dest="leader_election", action="store_false",
                           help="apply even without holding the lock in etcd (a single replica)")
    trust = parser.add_argument_group("trust")
    trust.add_argument("--verify-signatures", action="store_true",
                       help="apply only commits signed by a key of --keyring; others are refused like invalid ones")
    trust.add_argument("--keyring", metavar="FILE", help="trusted public keys (armored or binary gpg export)")
    output = parser.add_argument_group("output")
    output.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="status lines for people, or one JSON object per line (default: text)")
    output.add_argument("--metrics-addr", type=_address, metavar="HOST:PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics (and /healthz)")


def run(args: argparse.Namespace) -> int:
    from meshc.sync.watch_log import StatusLog

    problem = _usage_problem(args)
    if problem:
        sys.stderr.write(f"meshc: error: {problem}\n")
        return EXIT_USAGE
    log = StatusLog(sys.stdout, args.log_format)
    with contextlib.ExitStack() as stack:
        try:
            watcher = _build(args, log, stack)
        except _UsageError as exc:
            sys.stderr.write(f"meshc: error: {exc}\n")
            return EXIT_USAGE
        with _stop_on_signals(watcher):
            return watcher.run_once() if args.once else watcher.run()
    return EXIT_OK  # pragma: no cover - the with block always returns


class _UsageError(Exception):
    pass


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.verify_signatures and not args.keyring:
        return "--verify-signatures needs --keyring FILE"
    if args.keyring and not args.verify_signatures:
        return "--keyring is used with --verify-signatures"
    if args.interval <= 0:
        return "--interval must be longer than 0"
    return None


def _build(args: argparse.Namespace, log: Any, stack: contextlib.ExitStack) -> Watcher:
    """Everything the loop needs, each part closed by the stack when the loop ends."""
    from meshc.sync.watch import Watcher, WatchOptions
    from meshc.sync.watch_source import GitSource, SourceError
    from meshc.sync.watch_trust import KeyringError, TrustedKeyring

    gnupg_home = None
    if args.verify_signatures:
        try:
            gnupg_home = stack.enter_context(TrustedKeyring(args.keyring)).home
        except KeyringError as exc:
            raise _UsageError(str(exc)) from None
    source = GitSource(args.repo, args.branch, args.cache_dir)
    try:
        source.poll()  # a wrong path or branch is a usage error now, not a retry loop forever
    except SourceError as exc:
        if not source.remote:
            raise _UsageError(str(exc)) from None
        # A remote that is down at startup is retried by the loop like any later failure.
    targets = open_targets(args)  # bad target flags: MeshcError, exit 2
    stack.callback(close_targets, targets)
    options = WatchOptions(
        spec_path=args.path,
        interval=args.interval,
        drift_correction=args.drift_correction,
        drift_interval=args.drift_interval,
        prune_limit=args.prune_limit,
        allow_prune_all=args.allow_prune_all,
        backoff_base=min(1.0, args.interval),
        backoff_cap=max(args.max_backoff, min(1.0, args.interval)),
        gnupg_home=gnupg_home,
        allow_mesh_rename=args.allow_mesh_rename,
        watch_events=args.watch_events,
    )
    metrics = _start_metrics(args, stack)
    lock_for = _lock_factory(args, stack) if args.etcd and args.leader_election else None
    compile_fn = compile_function(args.envoy_config_dir, dict(args.envoy_host))
    watcher = Watcher(source, compile_fn, targets, options, log=log, metrics=metrics, lock_for=lock_for)
    if metrics is not None:
        _serve_metrics(args, metrics, watcher, stack, log)
    return watcher


def compile_function(config_dir: str | None = None, envoy_hosts: dict[str, str] | None = None) -> CompileFn:
    """The pipeline's compile, as the sync loop wants it: SpecSource -> (diagnostics, bundle or None).

    Each commit is checked and built incrementally from the last one that compiled: when only
    services' workload fields changed, only those services are loaded, validated and resolved
    again (meshc.incremental; any other change is checked in full), and only the services whose
    output can differ are emitted again, the rest is that bundle's bytes (the same bundle a full
    build makes). The last compilation's check and IR are kept for this; its bundle is the loop's
    anyway. Bundles come packed (meshc.bundle.pack: each service's own files kept compressed in
    memory), and a packed file is carried into the next bundle as it is."""
    from meshc.bundle import pack
    from meshc.defaults import ENVOY_CONFIG_DIR
    from meshc.incremental import check_from
    from meshc.pipeline import BuildOptions, Compiled, built, check

    options = BuildOptions(config_dir=config_dir or ENVOY_CONFIG_DIR, envoy_hosts=envoy_hosts or {})
    last: list[Compiled] = []

    def compile_spec(source: SpecSource) -> tuple[Sequence[Diagnostic], Bundle | None]:
        base = last[0] if last else None
        checked = (check_from(source, base.checked) if base is not None else None) or check(source)
        compiled = built(checked, options, base)
        if compiled.bundle is None:
            return compiled.diagnostics, None
        bundle = pack(compiled.bundle)
        last[:] = [dataclasses.replace(compiled, bundle=bundle)]
        return compiled.diagnostics, bundle

    return compile_spec


def _lock_factory(args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
    from meshc.sync.etcd_client import open_client
    from meshc.sync.target import SyncError
    from meshc.sync.watch_lock import LeaderLock

    try:
        client = open_client(dataclasses.replace(etcd_access(args), timeout=5.0))
    except SyncError as error:
        raise _UsageError(str(error)) from None
    stack.callback(client.session.close)
    ttl = max(2, round(args.lock_ttl))

    def lock_for(prefix: str) -> LeaderLock:
        return LeaderLock(client, f"{prefix.rstrip('/')}/lock", ttl=ttl)

    return lock_for


def _start_metrics(args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
    if args.metrics_addr is None:
        return None
    from meshc.sync.metrics import SyncMetrics

    return SyncMetrics()


def _serve_metrics(args: argparse.Namespace, metrics: Any, watcher: Watcher, stack: contextlib.ExitStack,
                   log: Any) -> None:
    from meshc.sync.metrics import MetricsServer

    host, port = args.metrics_addr
    try:
        server = MetricsServer(metrics, host, port, watcher.healthy).start()
    except OSError as exc:
        raise _UsageError(f"--metrics-addr {host}:{port}: {exc.strerror}") from None
    stack.callback(server.stop)
    bound_host, bound_port = server.address
    log.event("metrics", f"serving metrics on http://{bound_host}:{bound_port}/metrics",
              address=f"{bound_host}:{bound_port}")


@contextlib.contextmanager
def _stop_on_signals(watcher: Watcher) -> Iterator[None]:
    """SIGTERM/SIGINT ask the loop to stop after the current apply; a second one interrupts it."""
    def handler(signum: int, frame: FrameType | None) -> None:
        # Only flag the stop: the loop may be in the middle of writing a status line.
        if watcher.stopping:
            raise KeyboardInterrupt
        watcher.stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- argument types ------------------------------------------------------------------------

def _duration(text: str) -> float:
    try:
        return parse_duration(text) / 1000
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[::1]:PORT`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT (e.g. 0.0.0.0:9100 or 127.0.0.1:9100)")
    return host.strip("[]") or "0.0.0.0", int(port)
