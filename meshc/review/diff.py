"""What a change to mesh.yaml means: a semantic diff between two revisions, and its consequences.

The spec diff compares the resolved meshes subject by subject (services, versions, endpoints,
routes, mesh-wide settings), in the spec's terms and with each value's position in both revisions.
The consequences compare the two compiled bundles: Kubernetes objects, etcd keys and Envoy files
(and the clusters and listeners within them) that would be added, changed or removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from meshc import render
from meshc.diagnostics import Diagnostic, Path, Span
from meshc.load import Positions, SpecSource
from meshc.resolve import ir
from meshc.review import access, spec_view
from meshc.review.consequences import OutputChange, compare_bundles
from meshc.review.spec_view import Subject

if TYPE_CHECKING:
    from meshc.incremental import TextEdit
    from meshc.pipeline import Checked


class Action(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class SpecChange:
    action: Action
    kind: str                     # mesh | service | version | endpoint | route
    subject: str                  # "service catalog, version v2"
    service: str | None
    field: str                    # "" when the whole subject is added or removed; else "retries.attempts"
    old: Any
    new: Any
    old_span: Span | None
    new_span: Span | None


# (subject, dotted field) pairs -> where each is written in one revision
Locator = Callable[[Sequence[tuple[Subject, str]]], list[Span | None]]


@dataclass(frozen=True, slots=True)
class Side:
    """One revision: what was read, its diagnostics, the resolved view and the compiled output."""

    label: str                    # as the user named it: main, HEAD~1, a sha
    revision: str | None          # the full commit sha
    path: str
    exists: bool                  # False when the spec file is absent at this revision
    diagnostics: tuple[Diagnostic, ...] = ()
    subjects: dict[tuple[str, ...], Subject] = field(default_factory=dict)
    data: Any = None              # the loaded document and its positions, to locate changed fields
    positions: Positions | None = None
    files: Mapping[str, bytes] | None = None  # the files of its output to compare (with_outputs); None: not built
    build_note: str | None = None
    access: access.AccessView | None = None   # who may call whom (zero trust); None when invalid
    mesh: ir.Mesh | None = None   # the resolved mesh; None when invalid or absent
    # Where fields of its subjects are written, when the side was checked in another process
    # (meshc.review.forked), which keeps its data and positions; None: from data and positions.
    locator: Locator | None = field(default=None, compare=False, repr=False)

    @property
    def short(self) -> str:
        return (self.revision or "")[:12]

    @property
    def valid(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


@dataclass(frozen=True, slots=True)
class MeshDiff:
    old: Side
    new: Side
    spec_changes: tuple[SpecChange, ...]
    output_changes: tuple[OutputChange, ...]
    warnings_added: tuple[Diagnostic, ...]
    warnings_resolved: tuple[Diagnostic, ...]
    consequences_note: str | None   # why consequences are missing, when they are
    access_changes: tuple[access.AccessChange, ...] = ()   # permissions granted/revoked, mTLS modes

    @property
    def changed(self) -> bool:
        return bool(self.spec_changes or self.output_changes)


# --- reading one side ---------------------------------------------------------------------

def absent_side(label: str, revision: str | None, path: str) -> Side:
    return Side(label, revision, path, exists=False, files={})


def build_side(label: str, source: SpecSource) -> Side:
    """Check one revision's spec, loading and checking it once. Its output is built by
    `with_outputs`, which knows the other side and so what can differ."""
    from meshc.pipeline import check_loaded

    checked, loaded = check_loaded(source)
    if not checked.ok or checked.mesh is None:
        return Side(label, source.revision, source.name, True, checked.diagnostics)
    return replace(_valid_side(label, source, checked.diagnostics, checked.mesh),
                   data=loaded.data, positions=loaded.positions)


def _valid_side(label: str, source: SpecSource, diagnostics: tuple[Diagnostic, ...], mesh: ir.Mesh) -> Side:
    """The side of a spec that checked clean into `mesh`, before its document or files are given."""
    return Side(label, source.revision, source.name, True, diagnostics, {}, None, None, None, None,
                access.view(mesh), mesh)


def side_from(label: str, source: SpecSource, base: Side, base_source: SpecSource,
              edit: TextEdit | None = None) -> Side | None:
    """The side of `source` checked incrementally from `base`, the side of `base_source` (an
    earlier text of the same spec) checked in full: equal to `build_side(label, source)` in all a
    diff reads of it; None when `meshc.incremental` cannot make that check (then check in full).

    The incremental check loads only a small spec: the header and the changed services, at the
    new text's lines and columns. Every other service is written in the new text exactly where
    `base_source` writes it (each changed segment keeps its line count), so changed fields are
    located in the small spec's document for the changed services and in the base's for the rest."""
    from meshc.incremental import incremental_check
    from meshc.pipeline import Checked

    if base.mesh is None or not base.exists:
        return None
    made = incremental_check(source, Checked(base_source, base.diagnostics, base.mesh), edit)
    if made is None or made.checked.mesh is None:
        return None
    mesh = made.checked.mesh
    side = _valid_side(label, source, made.checked.diagnostics, mesh)
    if made.loaded is None:
        return replace(side, locator=lambda fields: locate(base, fields))
    rechecked = replace(side, data=made.loaded.data, positions=made.loaded.positions)

    def locator(fields: Sequence[tuple[Subject, str]]) -> list[Span | None]:
        # an unchanged service is the base's IR (spans included), written where the base has it
        return [locate_field(rechecked, subject, name) if subject.service in made.changed
                else locate(base, [(subject, name)])[0] for subject, name in fields]

    return replace(side, locator=locator)


def kept_side(label: str, source: SpecSource, checked: Checked, edit: TextEdit | None) -> Side:
    """The side of a check kept by an earlier run (`compile_cache.load_checked`), whose document
    was not loaded: fields of the services `edit` changed are located in the text's entries of
    them (`incremental.old_entries`), any other in the whole text, loaded when first needed."""
    from meshc.incremental import old_entries
    from meshc.load import load_yaml

    mesh = checked.mesh
    assert mesh is not None
    side = _valid_side(label, source, checked.diagnostics, mesh)
    entries = old_entries(source, edit, mesh) if edit is not None else None
    changed, partial = (entries[0], replace(side, data=entries[1].data, positions=entries[1].positions)) \
        if entries is not None else (frozenset[str](), side)
    whole: list[Side] = []

    def in_whole() -> Side:
        if not whole:
            loaded = load_yaml(source)
            whole.append(replace(side, data=loaded.data, positions=loaded.positions))
        return whole[0]

    def locator(fields: Sequence[tuple[Subject, str]]) -> list[Span | None]:
        return [locate_field(partial if subject.service in changed else in_whole(), subject, name)
                for subject, name in fields]

    return replace(side, locator=locator)


def with_outputs(old: Side, new: Side) -> tuple[Side, Side]:
    """Both sides with what they may differ in. Subjects: those of the services whose IR differs
    (with the mesh's and the gateways'). Files: when both compiled and no mesh-wide setting
    changed, those of the services whose output can differ (`affected_services`), the gateways'
    and the whole-mesh files; else every file. What is left out is the same on both sides (a full
    build would give it the same bytes), so comparing these finds every change."""
    from meshc.pipeline import affected_services, changed_services

    changed: set[str] | None = None
    affected = None
    if old.mesh is not None and new.mesh is not None:
        changed = changed_services(old.mesh, new.mesh)
        affected = affected_services(old.mesh, new.mesh)
    return built_side(old, changed, affected), built_side(new, changed, affected)


def built_side(side: Side, changed: set[str] | None, only: frozenset[str] | None) -> Side:
    """The side with the subjects of the `changed` services and the files of the `only` ones (with
    the mesh's and the gateways'; None: all of them), as `with_outputs` decides them."""
    mesh = side.mesh
    if mesh is None:
        return side
    side = replace(side, subjects=spec_view.subjects(mesh, changed))
    try:
        files = _files(mesh, changed, only)
    except NotImplementedError as exc:
        return replace(side, build_note=f"the output cannot be built by this meshc ({exc})")
    return replace(side, files=files)


def _files(mesh: ir.Mesh, changed: set[str] | None, only: frozenset[str] | None) -> dict[str, bytes]:
    """The files to compare. When only some services' files can differ (`only`), etcd's seed holds
    the records of the `changed` services alone: a record is made from its service and the
    mesh-wide settings (equal on both sides when `only` is given), so every other record is the
    same on both sides, and the seed is compared record by record."""
    import dataclasses

    from meshc.emit import etcd
    from meshc.pipeline import BuildOptions, build_files, iter_files

    if only is None or changed is None:
        return build_files(mesh, only=only)
    files = dict(iter_files(mesh, BuildOptions(), only=only, etcd_seed=False))
    records_of = dataclasses.replace(mesh, services=tuple(s for s in mesh.services if s.name in changed))
    files.update((path, render.file(docs)) for path, docs in etcd.emit(records_of).items())
    return files


# --- comparing ----------------------------------------------------------------------------

def diff_sides(old: Side, new: Side) -> MeshDiff:
    changes = tuple(_spec_changes(old, new))
    note = old.build_note or new.build_note
    outputs: tuple[OutputChange, ...] = ()
    if old.files is not None and new.files is not None and note is None:
        outputs = tuple(compare_bundles(old.files, new.files))
    added, resolved = _warning_changes(old.diagnostics, new.diagnostics)
    return MeshDiff(old, new, changes, outputs, added, resolved, note, access.access_changes(old.access, new.access))


def _spec_changes(old: Side, new: Side) -> Iterator[SpecChange]:
    keys = sorted(set(old.subjects) | set(new.subjects),
                  key=lambda k: (old.subjects.get(k) or new.subjects[k]).sort_key)
    # In order: whole subjects added or removed, and changed fields, which are located in one go
    # (a side checked in another process is asked once).
    found: list[SpecChange | tuple[Subject, Subject, str, Any, Any]] = []
    for key in keys:
        before, after = old.subjects.get(key), new.subjects.get(key)
        if before is None and after is not None:
            found.append(_whole(Action.ADDED, after, None, after.span))
        elif after is None and before is not None:
            found.append(_whole(Action.REMOVED, before, before.span, None))
        elif before is not None and after is not None:
            found += [(before, after, name, was, now) for name, was, now in _field_changes(before, after)]
    fields = [change for change in found if not isinstance(change, SpecChange)]
    old_spans = iter(locate(old, [(before, name) for before, _, name, _, _ in fields]))
    new_spans = iter(locate(new, [(after, name) for _, after, name, _, _ in fields]))
    for change in found:
        if isinstance(change, SpecChange):
            yield change
        else:
            _, after, name, was, now = change
            yield SpecChange(Action.CHANGED, after.kind, after.title, after.service, name, was, now,
                             next(old_spans), next(new_spans))


def locate(side: Side, fields: Sequence[tuple[Subject, str]]) -> list[Span | None]:
    """Where each (subject, field) is written in this side's revision (see `locate_field`)."""
    if side.locator is not None:
        return side.locator(fields) if fields else []
    return [locate_field(side, subject, name) for subject, name in fields]


# Of a service with one implicit version; once versions are declared they belong to each version.
_IMPLICIT_VERSION_FIELDS = ("image", "replicas", "resources", *spec_view.CONTAINER_FIELDS)


def _field_changes(before: Subject, after: Subject) -> Iterator[tuple[str, Any, Any]]:
    """Changed fields; when versions become declared (or implicit), the version subjects tell the story."""
    switched = before.values.get("versions") != after.values.get("versions")
    for name, was, now in compare_values(before.values, after.values):
        if switched and name.split(".")[0] in _IMPLICIT_VERSION_FIELDS:
            continue
        yield name, was, now


def _whole(action: Action, subject: Subject, old_span: Span | None, new_span: Span | None) -> SpecChange:
    values = subject.values
    return SpecChange(action, subject.kind, subject.title, subject.service, "",
                      values if action is Action.REMOVED else None,
                      values if action is Action.ADDED else None, old_span, new_span)


def compare_values(old: Any, new: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted field, old, new) for each difference; mappings present on both sides are compared key by key."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from compare_values(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
    elif old != new:
        yield prefix, old, new


def locate_field(side: Side, subject: Subject, field_name: str) -> Span | None:
    """Where the changed value is written: the field's key in the subject, else in `spec.defaults`
    (routes and services inherit from there), else its nearest written parent; else the IR's span."""
    positions = side.positions
    base = spec_view.data_path(side.data, subject) if positions is not None else None
    if positions is None or base is None:
        return subject.span_of(field_name)
    bases = [base] + ([_DEFAULTS] if subject.kind in ("route", "service") else [])
    for root in bases:
        field_path = _indexed(_at(side.data, root), tuple(field_name.split(".")))
        for parts in (field_path[:n] for n in range(len(field_path), 0, -1)):
            if positions.has(root + parts):
                return positions.key(root + parts)
    return subject.span_of(field_name)


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part] if isinstance(data, Mapping) and part in data else (
            data[part] if isinstance(data, list) and isinstance(part, int) and part < len(data) else None)
    return data


def _indexed(data: Any, field_path: tuple[str, ...]) -> Path:
    """The field path with each named list entry (`volumes.redis-data`, as subjects key the
    lists written with `name`) replaced by its index in the document."""
    found: list[str | int] = []
    for part in field_path:
        if isinstance(data, list):
            index = next((i for i, entry in enumerate(data)
                          if isinstance(entry, Mapping) and entry.get("name") == part), None)
            if index is None:
                break
            found.append(index)
            data = data[index]
        else:
            found.append(part)
            data = data.get(part) if isinstance(data, Mapping) else None
    return tuple(found)


_DEFAULTS: Path = ("spec", "defaults")


def _warning_changes(old: tuple[Diagnostic, ...],
                     new: tuple[Diagnostic, ...]) -> tuple[tuple[Diagnostic, ...], tuple[Diagnostic, ...]]:
    """Warnings that appear or disappear, by code and message (a moved line is not a new warning)."""
    before = {(d.code, d.message) for d in old if not d.is_error}
    after = {(d.code, d.message) for d in new if not d.is_error}
    added = tuple(d for d in new if not d.is_error and (d.code, d.message) not in before)
    resolved = tuple(d for d in old if not d.is_error and (d.code, d.message) not in after)
    return added, resolved
