"""`meshc build [SPEC] -o OUT`: compile and write the output directory atomically."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from meshc.commands.common import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    add_format_argument,
    add_spec_argument,
    at_least,
    build_options,
    check_from_args,
    collector_paused,
    config_dir,
    failed,
    left_to_exit,
    usage_error,
)
from meshc.defaults import ENVOY_CONFIG_DIR as DEFAULT_CONFIG_DIR
from meshc.defaults import GATEWAY_TLS_DIR
from meshc.progress import Progress

if TYPE_CHECKING:
    from meshc.pipeline import Checked, Started
    from meshc.resolve import ir

NAME = "build"
HELP = "compile mesh.yaml into Envoy, Kubernetes and etcd output"


def register(parser: argparse.ArgumentParser) -> None:
    add_spec_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory (replaced atomically)")
    parser.add_argument("--envoy-config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR", type=config_dir,
                        help=f"where sidecars read cds/lds (default {DEFAULT_CONFIG_DIR}, the ConfigMap mount); "
                        "set it for Envoy on hosts or VMs; {service} in DIR becomes each sidecar's name")
    parser.add_argument("--envoy-host", action="append", default=[], type=_envoy_host,
                        metavar="SERVICE[/VERSION]=HOST[:PORT]",
                        help="callers reach this service's (or version's) sidecar at HOST[:PORT] instead of its "
                        "Kubernetes DNS name; PORT defaults to the proxy inboundPort (repeatable; hosts and VMs)")
    parser.add_argument("--gateway-tls-dir", default=GATEWAY_TLS_DIR, metavar="DIR",
                        help=f"where gateways read their TLS Secrets' tls.crt and tls.key (default {GATEWAY_TLS_DIR}, "
                        "the Secret mount); {secret} in DIR becomes each Secret's name")
    parser.add_argument("--tls-dir", default=None, metavar="DIR",
                        help="where sidecars read their certificate (tls.crt, tls.key, ca.crt) under mTLS "
                        "(default /etc/meshc/tls, the Secret mount); {service} in DIR becomes each sidecar's "
                        "name, the layout `meshc ca issue` writes")
    parser.add_argument("-j", "--jobs", type=at_least(1), default=None, metavar="N",
                        help="processes that render and write files at once, for large meshes "
                        f"(default: the usable CPUs, at most {MAX_DEFAULT_JOBS}); the output is the same for any N")
    parser.add_argument("--verify-envoy", action="store_true",
                        help="before writing OUT, have Envoy (`envoy` on PATH, or $MESHC_ENVOY) validate every "
                        "sidecar with its cds/lds folded into the bootstrap; OUT is left unchanged if Envoy "
                        "rejects one")
    add_format_argument(parser)


def _envoy_host(text: str) -> tuple[str, str]:
    from meshc.emit.envoy.hosts import parse_host

    key, sep, host = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not SERVICE[/VERSION]=HOST[:PORT]")
    try:
        parse_host(host)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key, host


def run(args: argparse.Namespace) -> int:
    # The collector stays off for the whole command, not only inside each stage: turned back on
    # between the check and the writing, its first collection scanned every object the check had
    # made (the spec, its model, the IR: some 25 ms of the parent's time at 1,000 services, while
    # the worker writes), for no cycle to collect; the freeze on the way out saves 35-75 ms of
    # the command's last stretch at 1,000 services.
    with collector_paused():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from meshc.bundle import BundleWriteError
    from meshc.emit.kubernetes.dependencies import describe
    from meshc.pipeline import external_dependencies, write_build

    envoy = _envoy_binary() if args.verify_envoy else None
    jobs = args.jobs or _default_jobs()
    with EarlyWorkers(args, jobs) as early:
        checked = check_from_args(args, always=True, on_resolved=early.start)
        if not checked.ok or failed(checked.diagnostics, args.strict):
            reason = "; warnings are treated as errors (--strict)" if checked.ok else ""
            sys.stderr.write(f"meshc: build failed{reason}; {args.output} was not changed\n")
            return EXIT_INVALID
        if envoy is not None and not _envoy_accepts(checked, args, envoy):
            sys.stderr.write(f"meshc: build failed: Envoy rejects the output; {args.output} was not changed\n")
            return EXIT_INVALID
        # Known before the writing, while a worker is already at it: listed in the manifest and
        # printed after it, not computed then on the command's last stretch, where nothing else
        # runs beside it.
        external = external_dependencies(checked)
        try:
            with Progress("build") as progress:
                progress.step(f"writing {args.output}", poll=_files_written(args.output, checked))
                count = write_build(checked, args.output, build_options(args), jobs=jobs, started=early.started,
                                    external=external)
        except (BundleWriteError, OSError) as exc:
            sys.stderr.write(f"meshc: error: cannot write {args.output}: {exc}\n")
            return EXIT_USAGE
    left_to_exit(checked, early)
    if args.format == "text":
        sys.stderr.write(f"meshc: wrote {count} files to {args.output}\n")
        if external:
            sys.stderr.write("meshc: the manifests use objects meshc does not create (they must exist before the "
                             f"pods start; see externalDependencies in manifest.json): "
                             f"{', '.join(describe(d) for d in external)}\n")
    return EXIT_OK


class EarlyWorkers:
    """Build workers started as soon as the spec is resolved, while this process goes on with the
    last checks (analysis, sizes, spec.analysis.ignore), prints the diagnostics and gets ready to
    write: the workers start writing units of the output into OUT's staging directory at once, and
    this process takes its share of what is left once its check has passed. If the spec fails
    those checks (or anything else ends the command before the output is in place), leaving the
    `with` block stops the workers and removes the staging directory: OUT is exactly as it was.
    Nothing is started early when OUT cannot be replaced (the error is then reported after the
    check, as always)."""

    def __init__(self, args: argparse.Namespace, jobs: int) -> None:
        self.out: str = args.output
        self.options = build_options(args)
        self.jobs = jobs
        self.started: Started | None = None
        self._cleanup = contextlib.ExitStack()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._cleanup.close()

    def start(self, mesh: ir.Mesh) -> None:
        from meshc.bundle import BundleWriteError, Crew, StagedOutput
        from meshc.emit import envoy, etcd, kubernetes  # noqa: F401 - imported once, before the fork
        from meshc.pipeline import build_units, build_workers

        workers = build_workers(len(mesh.deployed_services), self.jobs)
        if workers == 0 or self.started is not None:
            return
        try:
            staged = self._cleanup.enter_context(StagedOutput(self.out))
        except (BundleWriteError, OSError):
            return
        crew = self._cleanup.enter_context(Crew(staged, workers))
        units = build_units(mesh, self.options)
        crew.fork(units)
        self.started = (staged, crew, units)


def _files_written(out: str, checked: Checked) -> Callable[[], tuple[int, int]]:
    """For the progress line: files in the staging directory that will become OUT, and how many
    there will be (four per deployed service, two more under mTLS, and a few for the whole mesh)."""
    target = Path(out).absolute()
    services = checked.mesh.deployed_services if checked.mesh is not None else ()
    expected = sum(6 if s.identity is not None else 4 for s in services) + 4 if services else 0

    def count() -> tuple[int, int]:
        staging = next(target.parent.glob(f".{target.name}.new-*"), None)
        done = sum(len(files) for _, _, files in os.walk(staging)) if staging is not None else 0
        return done, max(expected, done)

    return count


def _envoy_binary() -> str:
    from meshc.review.envoy_check import ENVOY_ENV, find_envoy

    envoy = find_envoy()
    if envoy is None:
        raise usage_error(f"--verify-envoy needs an envoy binary: none on PATH (or ${ENVOY_ENV} is not executable)")
    return envoy


def _envoy_accepts(checked: Checked, args: argparse.Namespace, envoy: str) -> bool:
    """Every sidecar of the build through `envoy --mode validate`, cds/lds folded in; says what Envoy rejects."""
    from meshc import render
    from meshc.emit import envoy as envoy_emitter
    from meshc.review.envoy_check import describe, sidecars, validate_sidecars

    assert checked.mesh is not None
    options = build_options(args)
    files = {path: render.file(docs) for path, docs in
             envoy_emitter.iter_documents(checked.mesh, options.config_dir, options.envoy_hosts, options.tls_dir)}
    with Progress("verifying sidecars with Envoy") as progress:
        rejections = validate_sidecars(files, envoy, jobs=args.jobs or _default_jobs(), progress=progress.update)
    for line in describe(rejections):
        sys.stderr.write(f"meshc: error: {line}\n")
    if args.format == "text" and not rejections:
        sys.stderr.write(f"meshc: Envoy ({envoy}) accepts all {len(sidecars(files))} sidecars\n")
    return not rejections


# The default --jobs never exceeds this: every worker holds its own copy of the parts of the IR
# it touches, and past a few writers the files' directory updates contend in the filesystem.
MAX_DEFAULT_JOBS = 4


def _default_jobs() -> int:
    return max(1, min(MAX_DEFAULT_JOBS, usable_cpus()))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity), and no more than a container's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(cpus, quota) if quota else cpus


def _cgroup_cpu_quota() -> int | None:
    """The CPU limit of this cgroup (v2 cpu.max, else v1 cfs quota and period); None if unlimited."""
    try:
        return cpu_limit(*Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2])
    except (OSError, TypeError):
        pass
    try:
        return cpu_limit(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip(),
                         Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip())
    except OSError:
        return None


def cpu_limit(quota: str, period: str) -> int | None:
    """Whole CPUs a quota per period allows, rounded up: "150000", "100000" -> 2; None for no
    limit ("max" in cgroup v2, -1 in v1)."""
    try:
        limit, length = int(quota), int(period)
    except ValueError:
        return None
    return -(-limit // length) if limit > 0 and length > 0 else None
