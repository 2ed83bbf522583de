"""`meshc diff`'s two revisions checked: one from the other, or both at once in two processes.

When the two texts allow it (`meshc.incremental.edit_between`: a few services' workloads edited in
place), the old revision is checked in full, or read back from meshc's cache when an earlier diff
kept its check (`compile_cache.load_checked`), and the new one incrementally from it
(`diff.side_from`), in this process: about a tenth of a second check instead of a second one.
Otherwise the two revisions are checked in full, at once when a CPU is free, as follows.

Checking a revision (load, validate, resolve, analyze) is most of a diff's work, and the two
revisions are independent until they are compared. So the old side is checked in a child forked
after the imports (it shares them, and the string-hash key `meshc.review.digest` relies on), while
this process checks the new side. Neither process then holds both meshes, and sending a whole IR
across costs about what checking it does; instead the child answers a few small requests:

1. checked: its side's diagnostics, and the digest of its mesh;
2. callees(names): of the changed services, the digests of what their callers see of them;
3. outputs(changed, affected): the subjects and access view of the changed services and the files
   that can differ, built from its mesh (as `diff.with_outputs` does) while this process builds
   its own;
4. locate([(subject, field), ...]): where changed fields are written in its revision.

Messages are pickles, each preceded by its length, over a socket pair. The child ignores Ctrl-C,
never writes to stdout or stderr, and leaves with os._exit. If it fails or dies, the side is
checked again here (what the serial diff does), so a child's failure is never the user's: an
invalid revision gives its diagnostics either way, and a bug in meshc surfaces from this process.
The child is always stopped and reaped when the comparison ends, also on errors and Ctrl-C.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from io import BufferedIOBase
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

from meshc.diagnostics import Span
from meshc.load import SpecSource
from meshc.resolve import ir
from meshc.review import access
from meshc.review import digest as digests
from meshc.review.diff import (
    MeshDiff,
    Side,
    build_side,
    built_side,
    diff_sides,
    kept_side,
    locate_field,
    side_from,
    with_outputs,
)
from meshc.review.spec_view import Subject

if TYPE_CHECKING:
    from meshc.incremental import TextEdit
    from meshc.pipeline import Checked

# An absent side (the spec is not in that revision), or a label and the spec to check.
Pending = Side | tuple[str, SpecSource]
Step = Callable[[str], None]


class ChildFailed(Exception):
    """The child checking a side failed or died: the side is checked in this process instead."""


class Comparison:
    """Both sides of a diff checked, built where they can differ, and compared.

    `with Comparison(old, new, jobs) as comparison: old, new, diff = comparison.run(step)`.

    When the texts allow it (`meshc.incremental.edit_between`: a few services edited in place,
    the usual commit), the old side is checked in full and the new one from it, incrementally, in
    this process: a fraction of a second check. Else, with jobs > 1 and two different specs to
    check, entering forks the child that checks the old side (do it before starting any thread);
    leaving stops it. `incremental=False` checks both sides in full (the same diff: tests hold the
    incremental one to it)."""

    def __init__(self, old: Pending, new: Pending, jobs: int = 1, incremental: bool = True,
                 kept: bool = False) -> None:
        self.old, self.new, self.jobs = old, new, jobs
        self.checked_in_child = False   # whether the old side's check came from a child (after run)
        self.checked_incrementally = False   # whether the new side was checked from the old (after run)
        self.old_was_kept = False   # whether the old side's check was kept by an earlier run (after run)
        self._child: ForkedSide | None = None
        self._edit: TextEdit | None = None
        self._incremental = incremental
        self._kept = kept
        self._to_keep: Checked | None = None   # the old side's check to keep (keep)

    def __enter__(self) -> Self:
        old, new = self.old, self.new
        if self._incremental and isinstance(old, tuple) and isinstance(new, tuple):
            from meshc.incremental import edit_between

            self._edit = edit_between(old[1], new[1])
            if self._edit is not None:
                return self
        if self.jobs > 1 and hasattr(os, "fork") and isinstance(old, tuple) and isinstance(new, tuple) \
                and old[1].data != new[1].data:
            # Both sides build files later: import the emitters once, here, rather than in each.
            from meshc.emit import envoy, etcd, kubernetes  # noqa: F401
            from meshc.bundle.store import interrupts_deferred

            with interrupts_deferred():   # a Ctrl-C now would leave a child nobody stops
                self._child = ForkedSide.start(*old)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop_child()

    def run(self, step: Step) -> tuple[Side, Side, MeshDiff | None]:
        """(old side, new side, their diff); no diff when a side is invalid. `step` names each
        phase as it starts (for a progress line)."""
        if self._edit is not None:
            return self._from_old(self._edit, step)
        step(f"checking {_label(self.old)} and {_label(self.new)}" if self._child else f"checking {_label(self.new)}")
        new = _checked(self.new)
        if self._child is not None:
            try:
                return self._with_child(new, step)
            except ChildFailed as failure:
                if os.environ.get("MESHC_DEBUG"):   # a bug to see; the user gets the diff anyway
                    sys.stderr.write(f"meshc: {failure}; checking it here instead\n")
                self.checked_in_child = False
                self._stop_child()
        old = _same_spec_checked(self.old, self.new, new)
        if old is None:
            step(f"checking {_label(self.old)}")
            old = _checked(self.old)
        if not (old.valid and new.valid):
            return old, new, None
        return _compared(old, new, step)

    def _from_old(self, edit: TextEdit, step: Step) -> tuple[Side, Side, MeshDiff | None]:
        """The old side checked in full, the new one incrementally from it (in full when that
        cannot be done: `side_from` gives None)."""
        assert isinstance(self.old, tuple) and isinstance(self.new, tuple)
        (old_label, old_source), (new_label, new_source) = self.old, self.new
        step(f"checking {old_label}")
        old = self._old_kept(old_label, old_source, edit) if self._kept else None
        if old is None:
            old = build_side(old_label, old_source)
            if self._kept and old.mesh is not None:
                from meshc.pipeline import Checked

                self._to_keep = Checked(old_source, old.diagnostics, old.mesh)
        step(f"checking {new_label} from {old_label}")
        new = side_from(new_label, new_source, old, old_source, edit)
        self.checked_incrementally = new is not None
        if new is None:
            new = build_side(new_label, new_source)
        if not (old.valid and new.valid):
            return old, new, None
        return _compared(old, new, step)

    def _old_kept(self, label: str, source: SpecSource, edit: TextEdit) -> Side | None:
        from meshc.compile_cache import load_checked

        checked = load_checked(source)
        self.old_was_kept = checked is not None
        return kept_side(label, source, checked, edit) if checked is not None else None

    def keep(self) -> None:
        """Keep the old side's check for later runs (`kept`), when it was made here: in a process
        this one does not wait for, after the diff is out (`compile_cache.store_checked_detached`)."""
        if self._to_keep is not None:
            from meshc.compile_cache import store_checked_detached

            store_checked_detached(self._to_keep)
            self._to_keep = None

    def _with_child(self, new: Side, step: Step) -> tuple[Side, Side, MeshDiff | None]:
        assert self._child is not None
        new_digest = digests.digest(new.mesh) if new.mesh is not None else None   # while the child may still work
        old, old_digest = self._child.checked()
        self.checked_in_child = True
        if not (old.valid and new.valid):
            return old, new, None
        step("building what can differ")
        changed = digests.changed(old_digest, new_digest)
        affected = self._affected(old_digest, new_digest, changed, new.mesh)
        self._child.request_outputs(changed, affected)
        new = replace(built_side(new, changed, affected), access=_access(new, changed))
        old = self._child.outputs(old)
        step("comparing")
        return old, new, diff_sides(old, new)

    def _affected(self, old: digests.MeshDigest | None, new: digests.MeshDigest | None, changed: set[str] | None,
                  new_mesh: ir.Mesh | None) -> frozenset[str] | None:
        """`digest.affected`, with the callee digests of the changed services from both sides."""
        assert self._child is not None
        if old is None or new is None or changed is None or new_mesh is None or old.mesh_wide != new.mesh_wide:
            return None
        both = digests.in_both(old, new, changed)
        return digests.affected(old, new, changed, self._child.callee_digests(both),
                                digests.callee_digests(new_mesh, both))

    def _stop_child(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None


def _access(side: Side, changed: set[str] | None) -> access.AccessView | None:
    """The side's access view, of the changed services alone: the others' permissions and modes
    are the same on both sides, so this is all the child sends (and all it is compared with)."""
    return access.view(side.mesh, changed) if side.mesh is not None else None


def _label(pending: Pending) -> str:
    return pending.label if isinstance(pending, Side) else pending[0]


def _checked(pending: Pending) -> Side:
    return pending if isinstance(pending, Side) else build_side(*pending)


def _same_spec_checked(old: Pending, new: Pending, checked: Side) -> Side | None:
    """The old side from the new one's check when both revisions hold the same spec, byte for byte."""
    if isinstance(old, tuple) and isinstance(new, tuple) and old[1].data == new[1].data and old[1].name == new[1].name:
        return replace(checked, label=old[0], revision=old[1].revision)
    return None


def _compared(old: Side, new: Side, step: Step) -> tuple[Side, Side, MeshDiff | None]:
    step("building what can differ")
    old, new = with_outputs(old, new)
    step("comparing")
    return old, new, diff_sides(old, new)


# --- the child ----------------------------------------------------------------------------

@dataclass
class ForkedSide:
    """A child process checking one side, and the parent's end of the socket to it."""

    label: str
    pid: int
    channel: BufferedIOBase
    reaped: bool = False

    @classmethod
    def start(cls, label: str, source: SpecSource) -> ForkedSide:
        import socket   # here: a diff checked in one process needs none of this

        from meshc.bundle.shards import fork_child

        parent_end, child_end = socket.socketpair()

        def serve() -> NoReturn:
            parent_end.close()
            _serve(label, source, child_end.makefile("rwb"))

        pid = fork_child(serve)
        child_end.close()
        channel = parent_end.makefile("rwb")
        parent_end.close()   # the file keeps the socket open
        return cls(label, pid, channel)

    def checked(self) -> tuple[Side, digests.MeshDigest | None]:
        """The side as checked (its diagnostics; no mesh), and its mesh's digest."""
        side, mesh_digest = self._receive("checked")
        return replace(side, locator=self.locate), mesh_digest

    def callee_digests(self, names: set[str]) -> dict[str, int]:
        if not names:
            return {}
        self._send(("callees", names))
        found: dict[str, int] = self._receive("callees")
        return found

    def request_outputs(self, changed: set[str] | None, affected: frozenset[str] | None) -> None:
        self._send(("outputs", changed, affected))

    def outputs(self, checked: Side) -> Side:
        """The checked side with the subjects and files the child built for `request_outputs`."""
        subjects, files, note, access_view = self._receive("outputs")
        return replace(checked, subjects=subjects, files=files, build_note=note, access=access_view)

    def locate(self, fields: Sequence[tuple[Subject, str]]) -> list[Span | None]:
        self._send(("locate", [(subject.key, name) for subject, name in fields]))
        located: list[Span | None] = self._receive("located")
        return located

    def stop(self) -> None:
        """Make sure the child is gone (killed if it is still working) and reaped."""
        if not self.reaped:
            from meshc.bundle.shards import kill_and_reap

            kill_and_reap(self.pid)
            self.reaped = True
        self.channel.close()

    def _send(self, message: object) -> None:
        try:
            _write(self.channel, message)
        except OSError as exc:   # the child is gone
            raise ChildFailed(f"checking {self.label} in a child process: {exc}") from exc

    def _receive(self, kind: str) -> Any:
        try:
            message = _read(self.channel)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:   # gone, or what it sent is not whole
            raise ChildFailed(f"checking {self.label} in a child process: {exc}") from exc
        if message is None or message[0] != kind:
            raise ChildFailed(f"checking {self.label} in a child process failed: "
                              f"{message[1] if message else 'it ended without an answer'}")
        return message[1] if len(message) == 2 else message[1:]


def _serve(label: str, source: SpecSource, channel: BufferedIOBase) -> NoReturn:
    """The child's whole life: check the side, answer the parent's requests until it closes the
    socket, and leave without running the parent's exit handlers or finally blocks (os._exit)."""
    status = 1
    try:
        try:
            side = build_side(label, source)
            summary = replace(side, data=None, positions=None, mesh=None, access=None)
            _write(channel, ("checked", summary, digests.digest(side.mesh) if side.mesh is not None else None))
            while (request := _read(channel)) is not None:
                side = _answer(side, request, channel)
            status = 0
        except BaseException as exc:  # noqa: BLE001 - the parent checks the side again, and reports
            import traceback

            _write(channel, ("failed", "".join(traceback.format_exception(exc)).rstrip()))
    finally:
        os._exit(status)


def _answer(side: Side, request: tuple[Any, ...], channel: BufferedIOBase) -> Side:
    """Answer one request (an unknown one is a bug: the child fails, and the parent checks again)."""
    if request[0] == "outputs":
        _, changed, affected = request
        side = replace(built_side(side, changed, affected), access=_access(side, changed))
        _write(channel, ("outputs", side.subjects, side.files, side.build_note, side.access))
    elif request[0] == "callees" and side.mesh is not None:
        _write(channel, ("callees", digests.callee_digests(side.mesh, request[1])))
    elif request[0] == "locate":
        _write(channel, ("located", [locate_field(side, side.subjects[key], name) for key, name in request[1]]))
    else:
        raise ValueError(f"a request the child cannot answer: {request[0]!r}")
    return side


def _write(channel: BufferedIOBase, message: object) -> None:
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    channel.write(len(payload).to_bytes(8, "big"))
    channel.write(payload)
    channel.flush()


def _read(channel: BufferedIOBase) -> Any:
    """The next message, or None when the other end has closed the socket."""
    header = channel.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "big")
    payload = channel.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)
