"""The GitOps sync loop behind `meshc watch`: poll a branch, compile each new commit, apply the plan.

One pass: poll the branch head; a commit not seen before is verified (signatures, optional),
read and compiled. An invalid or refused commit is reported once and never applied: the last
good bundle stays the desired state. Then the desired bundle is synced (plan every target, apply
only what differs): a new commit is applied, an applied one is re-planned so drift made by others
is corrected (or only reported, with drift correction off). Transient target failures retry with
capped exponential backoff; with a leader lock only its holder applies.

A new commit is planned against the bundle last applied (the baseline): only the objects of
files that differ are read. On Kubernetes, drift is found by watch streams (kube_events.py): an
event that shows a managed object edited, deleted or added by hand wakes the loop, which plans
and corrects just those objects; the cluster is then planned in full only every --drift-interval
(FULL_DRIFT_INTERVAL by default), or every interval while a stream is failing. Drift passes plan
the other targets (and, when due, the cluster), and are spaced so that they take
at most a third of the loop's time; while one plans, the branch is polled every interval and a
new commit sets it aside (not twice in a row, so drift is still checked under a stream of
commits). Any doubt about the baseline (start, failure, refusal, standby) makes the next plan a
full one.

The loop never imports the compiler: the CLI hands it `compile_fn`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from meshc.bundle import Bundle
from meshc.diagnostics import Diagnostic, MeshcError
from meshc.durations import format_duration
from meshc.load.source import SpecSource
from meshc.sync.backoff import Backoff
from meshc.sync.engine import DEFAULT_PRUNE_LIMIT, PruneRefused, SyncReport, prune_refusals, sync_once
from meshc.sync.kube_events import KubeEvents
from meshc.sync.kubernetes import KubernetesTarget
from meshc.sync.memory import release_memory
from meshc.sync.output import recorded_targets
from meshc.sync.rename import identity_of, identity_of_spec
from meshc.sync.target import Action, Interrupted, MeshIdentity, PermanentError, Plan, Target, TransientError
from meshc.sync.watch_lock import LeaderLock
from meshc.sync.watch_log import StatusLog, seconds
from meshc.sync.watch_source import Commit, GitSource, SignatureError, SourceError

CompileFn = Callable[[SpecSource], tuple[Sequence[Diagnostic], Bundle | None]]
SyncFn = Callable[..., SyncReport]
LockFactory = Callable[[str], LeaderLock]

LISTED_CHANGES = 10          # changes named one per line in a text status line; the rest are counted
# A drift pass starts no sooner than this many times its last full sync's duration after that
# sync ended: full plans take at most a third of the loop's time, the rest is free for commits.
DRIFT_SPACING = 2.0
REF_CHECK = 0.1             # seconds between looks at a local repository's branch files while waiting
ONCE_TRANSIENT_RETRIES = 5   # `--once` retries transient failures this often before giving up
# With watch streams finding drift on a cluster, its full plan (a LIST of every managed kind) is
# only a backstop: this often, unless --drift-interval says otherwise.
FULL_DRIFT_INTERVAL = 600.0


class Result(StrEnum):
    """What one pass did; the first five are the `result` label of meshc_sync_total."""

    APPLIED = "applied"      # wrote to a target: a new commit, or drift corrected
    NOOP = "noop"            # planned, nothing to write
    INVALID = "invalid"      # the new commit does not compile; nothing written
    FAILED = "failed"        # a target (or the Git source) failed
    REFUSED = "refused"      # the commit is not trusted, or its plan trips a prune guard
    STANDBY = "standby"      # another replica holds the lock
    WAITING = "waiting"      # no valid commit seen yet
    IDLE = "idle"            # the applied commit is not due for a drift check yet
    STOPPED = "stopped"      # asked to stop before the apply began


class MetricsSink(Protocol):
    """What the loop reports to (meshc.sync.metrics.SyncMetrics in production)."""

    def record_pass(self, result: str, seconds: float | None = None) -> None: ...
    def record_writes(self, per_target: dict[str, int]) -> None: ...
    def record_applied(self, revision: str, mesh: str, *, new: bool) -> None: ...
    def set_drifted(self, count: int) -> None: ...
    def set_leader(self, leader: bool) -> None: ...
    def source_error(self) -> None: ...


@dataclass(frozen=True)
class WatchOptions:
    spec_path: str = "mesh.yaml"
    interval: float = 5.0
    drift_correction: bool = True
    drift_interval: float | None = None   # re-plan an applied commit this often; None: every interval
    prune_limit: int = DEFAULT_PRUNE_LIMIT
    allow_prune_all: bool = False
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    gnupg_home: str | None = None         # verify commit signatures against this keyring when set
    allow_mesh_rename: bool = False       # apply a renamed/moved mesh and prune the old one
    watch_events: bool = True             # find drift on clusters by watch streams, not by LISTs


@dataclass(frozen=True)
class Desired:
    """The newest commit that compiled: what the targets should look like."""

    commit: Commit
    bundle: Bundle
    compile_s: float = 0.0        # reading and compiling the spec at the commit
    compile_cpu_s: float = 0.0    # ... the CPU time of the loop's thread in it (the rest: waiting, other threads)

    @property
    def mesh(self) -> str:
        return str(self.bundle.manifest.get("mesh", ""))

    @property
    def etcd_prefix(self) -> str | None:
        try:
            prefix = self.bundle.etcd_seed().get("prefix")
        except KeyError:
            return None
        return str(prefix) if prefix else None


@dataclass(frozen=True)
class PassOutcome:
    result: Result
    retry_in: float | None = None    # a transient failure: try again after this many seconds


@dataclass
class _Seen:
    """What the loop remembers between passes."""

    head: Commit | None = None               # the branch head last evaluated
    desired: Desired | None = None
    applied: str | None = None               # sha of the commit all targets were last synced to
    applied_mesh: MeshIdentity | None = None  # the mesh (name, namespace, prefix) of that commit
    leader: bool | None = None
    refused_logged: str | None = None        # commit whose prune refusal is already reported
    drift_logged: int = 0                    # drift count last reported (correction off)
    source_error: str | None = None          # last Git error reported (repeats stay quiet)
    last_result: Result | None = None
    retry_due: bool = False                  # the last sync failed: the next pass tries again
    # The commit and bundle last applied to every target, with no failure, refusal or standby
    # since: a new commit is planned against it (only what differs). None: plan in full.
    baseline: Desired | None = None
    full_started: float | None = None        # monotonic start of the pass of the last full sync
    full_ended: float = 0.0                  # ... when that sync ended
    full_s: float = 0.0                      # ... how long the sync took
    polled_at: float = 0.0                   # monotonic time of the last poll of the branch
    drift_set_aside: bool = False            # the last drift check was set aside for a new commit
    streamed_checked: float | None = None    # monotonic time the streamed targets were last planned in full
    events_error: str | None = None          # last watch stream failure reported
    ref_stamp: Any = None                    # the local branch files' fingerprint at the last poll
    release_due: bool = False                # a full plan parsed the whole mesh: give memory back after the pass


class Watcher:
    """Runs passes until stopped. `stop()` is safe from a signal handler or another thread."""

    def __init__(self, source: GitSource, compile_fn: CompileFn, targets: Sequence[Target], options: WatchOptions,
                 *, log: StatusLog, metrics: MetricsSink | None = None, lock_for: LockFactory | None = None,
                 sync_fn: SyncFn = sync_once, rng: random.Random | None = None) -> None:
        self.source = source
        self.compile_fn = compile_fn
        self.targets = list(targets)
        self.options = options
        self.log = log
        self.metrics = metrics or NullMetrics()
        self.sync_fn = sync_fn
        self.lock: LeaderLock | None = None
        self._lock_for = lock_for
        self._backoff = Backoff(options.backoff_base, max(options.backoff_cap, options.backoff_base),
                                rng=rng or random.Random())
        self._stop = threading.Event()
        self._wake = threading.Event()      # set by stop() and by a watch event that needs a plan
        self.events: dict[str, KubeEvents] = {}
        if options.watch_events:
            self.events = {t.name: KubeEvents(t, self.wake) for t in self.targets if isinstance(t, KubernetesTarget)}
        self.stop_reason: str | None = None
        self.passes = 0
        self.drift_checks_set_aside = 0
        self.state = _Seen()
        self.heartbeat = time.monotonic()

    # -- control -----------------------------------------------------------------------------
    def stop(self, reason: str = "stop requested") -> None:
        """Stop after the current step: an apply under way finishes, one not yet begun is abandoned."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Run the next pass now (a watch stream saw an object that needs a plan)."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def healthy(self) -> bool:
        """The loop has started a pass recently (a stuck apply or Git fetch makes this False)."""
        allowance = 3 * self.options.interval + self.options.backoff_cap + 300
        return time.monotonic() - self.heartbeat < allowance

    def run(self) -> int:
        """Pass after pass until stopped; then release the lock. Always 0: failures are reported."""
        self._announce()
        try:
            while not self.stopping:
                started = time.monotonic()
                outcome = self.run_pass()
                self._give_memory_back()
                wait = outcome.retry_in
                if wait is None:
                    wait = max(0.0, self.options.interval - (time.monotonic() - started))
                self._wait(wait)
        finally:
            self.close()
        return 0

    def run_once(self) -> int:
        """One pass (transient failures retried a few times): 0 when in sync, 1 otherwise."""
        self._announce()
        try:
            outcome = self.run_pass()
            for _ in range(ONCE_TRANSIENT_RETRIES):
                if outcome.retry_in is None or self.stopping:
                    break
                self._wait(outcome.retry_in)
                outcome = self.run_pass()
        finally:
            self.close()
        return 0 if outcome.result in (Result.APPLIED, Result.NOOP, Result.STANDBY) else 1

    def close(self) -> None:
        for events in self.events.values():
            events.close()
        if self.lock is not None:
            was_leader = self.lock.held
            self.lock.release()
            if was_leader:
                self.metrics.set_leader(False)
                self.log.event("leader", f"released the lock {self.lock.key}", lock=self.lock.key, leader=False)
        self.source.close()
        applied = self.state.applied
        why = f" ({self.stop_reason})" if self.stop_reason else ""
        self.log.event("stopped", f"watch stopped{why}" + (f"; {applied[:7]} is applied" if applied else ""),
                       applied=applied, reason=self.stop_reason)
        self.log.close()

    # -- one pass ----------------------------------------------------------------------------
    def run_pass(self) -> PassOutcome:
        self.heartbeat = time.monotonic()
        try:
            outcome = self._pass()
        except Exception as exc:  # noqa: BLE001 - a bug must not end the loop that keeps the mesh in sync
            self.log.event("error", f"internal error (please report it): {type(exc).__name__}: {exc}",
                           error=f"{type(exc).__name__}: {exc}")
            self.state.baseline = None
            outcome = PassOutcome(Result.FAILED)
        self.state.last_result = outcome.result
        self.passes += 1
        return outcome

    def _pass(self) -> PassOutcome:
        polled = self._poll()
        if polled is not None:
            return polled
        desired = self.state.desired
        if desired is None:
            if self.state.source_error is not None:
                return PassOutcome(Result.FAILED)
            self.log.status(f"waiting for a valid commit on {self.source.branch}")
            return PassOutcome(Result.WAITING)
        return self._sync(desired)

    def _poll(self) -> PassOutcome | None:
        """Look at the branch head; a new commit is evaluated. Returns an outcome if that ends the pass."""
        self.state.polled_at = time.monotonic()
        self.state.ref_stamp = self._ref_stamp()   # before the poll: a commit in between is not missed
        try:
            commit = self.source.poll()
        except SourceError as exc:
            self.metrics.source_error()
            if str(exc) != self.state.source_error:
                self.log.event("source", f"cannot read {self.source.display}: {exc}; retrying every "
                               f"{seconds(self.options.interval)}", error=str(exc))
            self.state.source_error = str(exc)
            return None
        if self.state.source_error is not None:
            self.log.event("source", f"{self.source.display} is readable again")
            self.state.source_error = None
        if self.state.head is not None and commit.sha == self.state.head.sha:
            return None
        self.state.head = commit
        return self._evaluate(commit)

    def _evaluate(self, commit: Commit) -> PassOutcome | None:
        """Verify, read and compile a new commit; it becomes the desired state only if all pass."""
        if self.options.gnupg_home is not None:
            try:
                self.source.verify_signature(commit, self.options.gnupg_home)
            except SignatureError as exc:
                return self._reject(commit, Result.REFUSED, f"not applied: {exc}", reason=str(exc))
        started, cpu = time.monotonic(), time.thread_time()
        try:
            spec = self.source.read_spec(commit, self.options.spec_path)
        except MeshcError as exc:
            return self._reject(commit, Result.INVALID, "not applied: the spec cannot be read",
                                diagnostics=exc.diagnostics)
        diagnostics, bundle = self.compile_fn(spec)
        if bundle is None:
            errors = [d for d in diagnostics if d.is_error] or list(diagnostics)
            return self._reject(commit, Result.INVALID, f"not applied: {len(errors)} error"
                                f"{'s' * (len(errors) != 1)} in {self.options.spec_path}", diagnostics=errors,
                                compile_s=round(time.monotonic() - started, 3))
        self.state.desired = Desired(commit, bundle, time.monotonic() - started, time.thread_time() - cpu)
        return None

    def _reject(self, commit: Commit, result: Result, message: str, *, diagnostics: Sequence[Diagnostic] = (),
                **fields: Any) -> PassOutcome:
        kept = self.state.desired.commit.short if self.state.desired else None
        suffix = f"; {kept} stays applied" if kept else ""
        self.log.event(result.value, f'{commit.short} "{commit.subject}" {message}{suffix}', diagnostics=diagnostics,
                       commit=commit.sha, subject=commit.subject, kept=kept, **fields)
        self.metrics.record_pass(result.value)
        return PassOutcome(result)

    # -- syncing -----------------------------------------------------------------------------
    def _sync(self, desired: Desired) -> PassOutcome:
        new = desired.commit.sha != self.state.applied
        dry_run = not new and not self.options.drift_correction
        self._report_stream_errors()
        if not new and not self.state.retry_due and any(e.pending() for e in self.events.values()):
            return self._correct_events(desired)
        # A refused commit is checked again at the pace of drift checks, not every pass.
        recheck = not new or self.state.refused_logged == desired.commit.sha
        if recheck and not (self.state.retry_due or self._drift_check_due()):
            return PassOutcome(Result.IDLE)
        targets = self.targets if new or self.state.retry_due else self._drift_targets()
        if not targets:
            self._full_sync_done(time.monotonic(), incremental=False)
            return PassOutcome(Result.IDLE)
        if not self._lead(desired):
            self.state.baseline = None   # the leader may apply meanwhile: what is live is its doing
            self.log.status(f"standing by: another replica holds the lock ({desired.commit.short} is desired)")
            return PassOutcome(Result.STANDBY)
        if self.stopping:
            return PassOutcome(Result.STOPPED)
        if new and self.state.refused_logged != desired.commit.sha:   # a refused commit is announced once
            self.log.event("applying", f'{desired.commit.short} "{desired.commit.subject}"',
                           commit=desired.commit.sha, subject=desired.commit.subject)
        baseline = self.state.baseline if new else None   # drift passes plan the whole mesh
        if new:
            for events in self.events.values():
                events.expect(desired.bundle)   # this commit's own writes are no drift
        # A drift check (or a refused commit's check) gives way to a new commit, not twice in a row.
        interrupt = self._commit_waiting if recheck and not self.state.drift_set_aside else None
        for events in self.events.values():
            events.sync_starts()   # a new stream may start from this sync's LISTs, never an earlier one's
        started = time.monotonic()
        try:
            report = self.sync_fn(desired.bundle, targets, revision=desired.commit.sha, dry_run=dry_run,
                                  prune_limit=self.options.prune_limit, allow_prune_all=self.options.allow_prune_all,
                                  previous=baseline.bundle if baseline else None,
                                  previous_revision=baseline.commit.sha if baseline else None, interrupt=interrupt,
                                  previous_meshes=self._previous_meshes(desired),
                                  allow_mesh_rename=self.options.allow_mesh_rename)
        except Interrupted:
            if self.stopping:
                return PassOutcome(Result.STOPPED)
            self.state.drift_set_aside = True
            self.drift_checks_set_aside += 1
            self.log.status(f"drift check of {desired.commit.short} set aside: a new commit is waiting")
            return PassOutcome(Result.IDLE, retry_in=0.0)   # the next pass picks the commit up now
        except PruneRefused as exc:
            self.state.baseline = None
            self._full_sync_done(started, incremental=any(plan.incremental for plan in exc.plans))
            return self._refused(desired, exc, time.monotonic() - started)
        except TransientError as exc:
            self.state.retry_due, self.state.baseline = True, None
            return self._failed(desired, exc, time.monotonic() - started, transient=True)
        except PermanentError as exc:
            self.state.retry_due, self.state.baseline = True, None
            return self._failed(desired, exc, time.monotonic() - started, transient=False)
        duration = time.monotonic() - started
        self._full_sync_done(started, incremental=report.incremental)
        self.state.retry_due = False
        self._backoff.reset()
        if len(targets) == len(self.targets):
            self.state.streamed_checked = time.monotonic()
        if len(targets) == len(self.targets) and not report.incremental:
            self.state.release_due = True     # a full plan of every target parsed the whole mesh
        if dry_run:
            self._follow_events(desired, planned=False)   # drift was found, not corrected: streams LIST
            return self._drift_reported(desired, report, duration)
        self.state.baseline = desired
        self.state.applied_mesh = identity_of(desired.bundle)
        self._follow_events(desired, planned=True)
        return self._synced(desired, report, duration, new)

    # -- drift found by watch streams ----------------------------------------------------------
    def _drift_targets(self) -> list[Target]:
        """What a drift pass plans: every target whose drift no healthy stream watches, and the
        streamed ones too when their full check is due."""
        every = self.options.drift_interval if self.options.drift_interval is not None else FULL_DRIFT_INTERVAL
        checked = self.state.streamed_checked
        if checked is None or time.monotonic() - checked >= every - 0.001:
            return self.targets
        return [t for t in self.targets if t.name not in self.events or not self.events[t.name].healthy]

    def _follow_events(self, desired: Desired, *, planned: bool) -> None:
        for events in self.events.values():
            try:
                events.follow(desired.bundle, planned=planned)
            except (TransientError, PermanentError) as exc:   # the streams start again after the next sync
                self._report_stream_error(f"cannot start watch streams: {exc}")

    def _report_stream_errors(self) -> None:
        for events in self.events.values():
            if events.last_error is not None and events.last_error != self.state.events_error:
                self._report_stream_error(events.last_error)

    def _report_stream_error(self, error: str) -> None:
        self.state.events_error = error
        self.log.event("source", f"kubernetes watch stream: {error}; drift is checked by full plans until it "
                       "recovers", error=error)

    def _correct_events(self, desired: Desired) -> PassOutcome:
        """Plan (and unless drift correction is off, apply) just the objects watch events marked."""
        if not self._lead(desired):
            for events in self.events.values():
                events.take()          # the leader corrects them
            return PassOutcome(Result.STANDBY)
        started = time.monotonic()
        marked = {name: events.take() for name, events in self.events.items()}
        targets = [t for t in self.targets if marked.get(t.name)]
        dry_run = not self.options.drift_correction
        report = SyncReport(desired.commit.sha, [], dry_run=dry_run)
        try:
            for target in targets:
                assert isinstance(target, KubernetesTarget)
                paths = self.events[target.name].paths_of(marked[target.name], desired.bundle)
                report.plans.append(target.plan_keys(desired.bundle, marked[target.name],
                                                     revision=desired.commit.sha, paths=paths))
            reasons = prune_refusals(report.plans, prune_limit=self.options.prune_limit,
                                     allow_prune_all=self.options.allow_prune_all)
            if reasons:
                raise PruneRefused(reasons, report.plans)
            if not dry_run:
                for target, plan in zip(targets, report.plans):
                    if plan.writes:
                        report.results.append(target.apply(plan, desired.bundle))
        except PruneRefused as exc:
            return self._refused(desired, exc, time.monotonic() - started)
        except (TransientError, PermanentError) as exc:
            for name, keys in marked.items():
                self.events[name].give_back(keys)
            transient = isinstance(exc, TransientError)
            return self._failed(desired, exc, time.monotonic() - started, transient=transient)
        duration = time.monotonic() - started
        self._backoff.reset()
        if dry_run:
            return self._drift_reported(desired, report, duration)
        return self._synced(desired, report, duration, False)

    def _previous_meshes(self, desired: Desired) -> list[MeshIdentity]:
        """The mesh applied before this commit, to see a rename: the one this watcher applied,
        or (after a start) the one the spec declared at the commit's parents."""
        if self.state.applied_mesh is not None:
            return [self.state.applied_mesh]
        identities = []
        for spec in self.source.parent_specs(desired.commit, self.options.spec_path):
            identity = identity_of_spec(spec)
            if identity is not None:
                identities.append(identity)
        return identities

    def _full_sync_done(self, started: float, *, incremental: bool) -> None:
        """Remember when the last full plan of the mesh ran: drift checks are paced by it."""
        if incremental:
            return
        now = time.monotonic()
        # From the start of the pass, so a check every interval stays every interval.
        self.state.full_started, self.state.full_ended, self.state.full_s = self.heartbeat, now, now - started
        self.state.drift_set_aside = False

    def _commit_waiting(self) -> bool:
        """Asked while a drift check plans: should it give way? Yes when stopping, or when the
        branch (polled at most once per interval, as between passes, or at once when a local
        repository's branch files moved) names a commit not seen yet."""
        if self.stopping:
            return True
        now = time.monotonic()
        stamp = self.state.ref_stamp
        current = self._ref_stamp() if stamp is not None else None   # taken before the poll, as _poll takes
        moved = current != stamp                                      # it: a later move is seen
        if not moved and now - self.state.polled_at < self.options.interval:
            return False
        self.state.polled_at = now
        if stamp is not None:
            self.state.ref_stamp = current
        try:
            commit = self.source.poll()
        except SourceError:
            return False     # the next pass reports it
        return self.state.head is not None and commit.sha != self.state.head.sha

    def _drift_check_due(self) -> bool:
        """Every --drift-interval (start to start), and no sooner than DRIFT_SPACING times the last
        full sync's duration after it ended, so full plans of a large mesh leave room for commits."""
        if self.state.full_started is None:
            return True
        every = self.options.interval if self.options.drift_interval is None else self.options.drift_interval
        now = time.monotonic()
        return (now - self.state.full_started >= every - 0.001
                and now - self.state.full_ended >= DRIFT_SPACING * self.state.full_s)

    def _lead(self, desired: Desired) -> bool:
        """True when this replica may apply: there is no lock, or it holds it."""
        if self._lock_for is None:
            if self.state.leader is None:
                self.state.leader = True
                self.metrics.set_leader(True)
            return True
        if self.lock is None:
            prefix = desired.etcd_prefix
            if prefix is None:
                raise PermanentError("leader election needs the mesh's etcd prefix, and the bundle has none")
            self.lock = self._lock_for(prefix)
        held = self.lock.ensure()
        if held != self.state.leader:
            self.state.leader = held
            self.metrics.set_leader(held)
            if held:
                self.log.event("leader", f"holds the lock {self.lock.key}; this replica applies",
                               lock=self.lock.key, leader=True, identity=self.lock.identity)
            else:
                why = f" ({self.lock.last_error})" if self.lock.last_error else " (another replica holds it)"
                self.log.event("leader", f"standing by: not the holder of {self.lock.key}{why}",
                               lock=self.lock.key, leader=False, identity=self.lock.identity,
                               error=self.lock.last_error)
        return held

    def _synced(self, desired: Desired, report: SyncReport, duration: float, new: bool) -> PassOutcome:
        commit = desired.commit
        writes = {r.target: r.write_requests for r in report.results}
        self.metrics.record_writes(writes)
        changed = report.changed
        # "noop": no content changed; a new commit's revision records may still have been written.
        result = Result.APPLIED if changed else Result.NOOP
        self.metrics.record_pass(result.value, duration)
        self.metrics.record_applied(commit.sha, desired.mesh, new=new)
        self.state.applied = commit.sha
        self.state.refused_logged = None
        fields = _report_fields(report, duration)
        recorded = _recorded_note(report)
        if new:
            what = _summary(report.plans) if changed else "nothing to change"
            self.log.event(result.value, f'{commit.short} "{commit.subject}": {what}{recorded} '
                           f"({report.write_requests} writes, {seconds(duration)})",
                           lines=_listing(report.plans), commit=commit.sha, subject=commit.subject,
                           compile_s=round(desired.compile_s, 3), compile_cpu_s=round(desired.compile_cpu_s, 3),
                           **fields)
            self.metrics.set_drifted(0)
        elif changed:
            drifted = sum(len(p.content_writes) for p in report.plans)
            self.metrics.set_drifted(drifted)
            self.log.event("drift", f"{commit.short}: corrected {drifted} drifted object{'s' * (drifted != 1)}: "
                           f"{_summary(report.plans)}{recorded} ({report.write_requests} writes, "
                           f"{seconds(duration)})", lines=_listing(report.plans), commit=commit.sha, drifted=drifted,
                           **fields)
        else:
            self.metrics.set_drifted(0)
            if report.recorded:   # someone changed a revision record: it names this commit again
                self.log.event("drift", f"{commit.short}: no object drifted{recorded} "
                               f"({report.write_requests} writes, {seconds(duration)})", commit=commit.sha,
                               drifted=0, **fields)
        self.log.status(f"in sync at {commit.short} \"{commit.subject}\" (checked in {seconds(duration)})")
        return PassOutcome(result)

    def _drift_reported(self, desired: Desired, report: SyncReport, duration: float) -> PassOutcome:
        """Drift correction is off: count what drifted, say so when the count changes, write nothing."""
        drifted = sum(len(p.content_writes) for p in report.plans)
        self.metrics.set_drifted(drifted)
        self.metrics.record_pass(Result.NOOP.value, duration)
        if drifted != self.state.drift_logged:
            self.state.drift_logged = drifted
            message = (f"{desired.commit.short}: {drifted} object{'s' * (drifted != 1)} drifted, not corrected "
                       f"(drift correction is off): {_summary(report.plans)}"
                       if drifted else f"{desired.commit.short}: no drift left")
            self.log.event("drift", message, lines=_listing(report.plans), commit=desired.commit.sha, drifted=drifted, corrected=False,
                           **_report_fields(report, duration))
        return PassOutcome(Result.NOOP)

    def _refused(self, desired: Desired, exc: PruneRefused, duration: float) -> PassOutcome:
        self.metrics.record_pass(Result.REFUSED.value, duration)
        if self.state.refused_logged != desired.commit.sha:
            self.state.refused_logged = desired.commit.sha
            commit = desired.commit
            self.log.event("refused", f'{commit.short} "{commit.subject}" not applied: ' + "; ".join(exc.reasons),
                           commit=commit.sha, subject=commit.subject, reasons=exc.reasons)
        return PassOutcome(Result.REFUSED)

    def _failed(self, desired: Desired, exc: Exception, duration: float, *, transient: bool) -> PassOutcome:
        self.metrics.record_pass(Result.FAILED.value, duration)
        commit = desired.commit
        retry_in = self._backoff.next_delay() if transient else None
        when = seconds(retry_in) if retry_in is not None else seconds(self.options.interval)
        kind = "transient" if transient else "permanent"
        self.log.event("failed", f"{commit.short} \"{commit.subject}\": {exc} ({kind}; retry in {when})",
                       commit=commit.sha, subject=commit.subject, error=str(exc), transient=transient,
                       retry_in_s=round(retry_in, 3) if retry_in is not None else self.options.interval,
                       attempt=self._backoff.attempt if transient else None)
        return PassOutcome(Result.FAILED, retry_in)

    # -- helpers -----------------------------------------------------------------------------
    def _announce(self) -> None:
        targets = ", ".join(t.name for t in self.targets)
        self.log.event("watching", f"{self.source.display} branch {self.source.branch}, {self.options.spec_path}, "
                       f"every {format_duration(round(self.options.interval * 1000))} -> {targets or 'no target'}"
                       + _drift_note(self.options),
                       repo=self.source.display, branch=self.source.branch, path=self.options.spec_path,
                       interval_s=self.options.interval, targets=[t.name for t in self.targets],
                       drift_correction=self.options.drift_correction, drift_interval_s=self.options.drift_interval,
                       verify_signatures=self.options.gnupg_home is not None)

    def _wait(self, delay: float) -> None:
        """Sleep until the next pass or a stop; on a terminal, count down on the live line."""
        deadline = time.monotonic() + delay
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.log.live and left >= 1:
                self.log.status(self._live_text(left))
            slice_s = min(left, 1.0) if self.log.live else left
            if self.state.ref_stamp is not None:
                slice_s = min(slice_s, REF_CHECK)
            if self._wake.wait(slice_s):
                self._wake.clear()
                return
            if self.state.ref_stamp is not None and self._ref_stamp() != self.state.ref_stamp:
                return      # the branch's files moved: poll now, not at the next interval

    def _give_memory_back(self) -> None:
        """After a pass whose full plan parsed the whole mesh (once the pass is over: its plans and
        report, which hold those objects, are gone by now), or a burst of watch events."""
        if self.state.release_due:
            self.state.release_due = False
            release_memory()
        for events in self.events.values():
            events.settle()

    def _ref_stamp(self) -> Any:
        stamp = getattr(self.source, "ref_stamp", None)
        return stamp() if stamp is not None else None

    def _live_text(self, left: float) -> str:
        desired, result = self.state.desired, self.state.last_result
        where = f"at {desired.commit.short}" if desired else "no valid commit yet"
        return f"{where} ({result.value if result else 'starting'}); next check in {left:.0f}s"


class NullMetrics:
    """Metrics that go nowhere (watch without --metrics-addr, and tests that do not look)."""

    def record_pass(self, result: str, seconds: float | None = None) -> None:
        pass

    def record_writes(self, per_target: dict[str, int]) -> None:
        pass

    def record_applied(self, revision: str, mesh: str, *, new: bool) -> None:
        pass

    def set_drifted(self, count: int) -> None:
        pass

    def set_leader(self, leader: bool) -> None:
        pass

    def source_error(self) -> None:
        pass


def _drift_note(options: WatchOptions) -> str:
    if not options.drift_correction:
        return " (drift correction off)"
    if options.drift_interval is not None and options.drift_interval != options.interval:
        return f" (drift checked every {format_duration(round(options.drift_interval * 1000))})"
    return ""


def _counts(plan: Plan) -> dict[str, int]:
    return {action.value: plan.count(action) for action in (Action.CREATE, Action.UPDATE, Action.DELETE)
            if plan.count(action)}


def _summary(plans: Sequence[Plan]) -> str:
    """`kubernetes 2 updated, 1 created; etcd 1 updated` (targets with nothing to do left out)."""
    words = {"create": "created", "update": "updated", "delete": "deleted"}
    parts = []
    for plan in plans:
        counts = _counts(plan)
        if counts:
            parts.append(f"{plan.target} " + ", ".join(f"{n} {words[a]}" for a, n in counts.items()))
    return "; ".join(parts) or "nothing to change"


def _listing(plans: Sequence[Plan]) -> list[str]:
    """The changed objects, one line each (text log only), up to LISTED_CHANGES."""
    changes = [(plan.target, c) for plan in plans for c in plan.content_writes]
    lines = [f"{c.action.value:<6} {target}: {c.key}" + (f" ({c.detail})" if c.detail else "")
             for target, c in changes[:LISTED_CHANGES]]
    if len(changes) > LISTED_CHANGES:
        lines.append(f"... and {len(changes) - LISTED_CHANGES} more")
    return lines + [f"note   {plan.target}: {note}" for plan in plans for note in plan.notes]


def _recorded_note(report: SyncReport) -> str:
    """`; revision recorded in etcd /meshc/shop/revision, directory manifest.json`, or ""."""
    return f"; revision recorded in {recorded_targets(report)}" if report.recorded else ""


def _report_fields(report: SyncReport, duration: float) -> dict[str, Any]:
    """The json facts of a sync: per-target counts and writes, the changed keys, the revision
    records written, whether the plan was incremental, the time."""
    writes = {r.target: r.write_requests for r in report.results}
    return {
        "targets": {plan.target: {**_counts(plan), "writes": writes.get(plan.target, 0)} for plan in report.plans},
        "changes": [{"target": plan.target, "action": c.action.value, "key": c.key, "detail": c.detail or None}
                    for plan in report.plans for c in plan.content_writes][:200],
        "recorded": [{"target": target, "key": change.key} for target, change in report.recorded],
        "writes": report.write_requests,
        "incremental": report.incremental,
        "duration_s": round(duration, 3),
        "dry_run": report.dry_run or None,
    }
