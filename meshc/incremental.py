"""An incremental check: a new commit of a spec checked against a kept check of an earlier one.

`plan`/`apply --repo` check each new commit of a spec whose earlier commit they compiled and kept
(meshc.compile_cache). Most commits change one service's workload: an image, a replica count,
an environment variable. Checking the whole spec again for that (loading it with positions,
validating, resolving and analyzing every service) is most of a one-service apply at 5,000
services. `check_from(source, base)` gives the same `Checked` as `pipeline.check(source)`
(diagnostics with their positions, IR with its spans), loading and resolving only the changed
services, or None when it cannot prove that; the caller then checks in full (a fallback is only
slower, never different).

How. The spec text is cut into lines: `spec.services` is a block sequence, each of its entries a
segment (from its `- ` line to the next entry or the sequence's end); everything else is the
header. The new text is compared with the base's, segment by segment. The fast path is taken
only when:

- the header is the same text, and there are as many segments (nothing added, removed or moved);
- each changed segment keeps its line count, so every span and position outside it stays where
  the base check put it;
- no changed segment (before or after) defines an anchor, holds a tag or a merge key (an alias
  of an anchor that an unchanged segment defines is allowed: that segment is loaded with it);
- loaded with meshc's loader, old and new changed entries differ only in fields that nothing
  outside the service's own IR depends on (`SERVICE_LOCAL`, and in `versions` with the same names
  and weights, `VERSION_LOCAL`): its pods' containers, volumes and settings, which its callers'
  files, the analysis, the size checks and every cross-service check do not read
  (pipeline.as_callee is what callers see of a service, and it leaves these out);
- a changed entry has no more keys and values than before (the file stays within the loader's
  MAX_NODES), at most MAX_CHANGED entries changed, and the file is within MAX_SPEC_BYTES;
- the base check reported nothing within a changed segment.

The conditions that read the texts alone (all but the last) are `edit_between(old, new)`, which
a caller may ask before it checks anything: `meshc diff` chooses with it between checking the old
revision in full and the new one from it, and checking both in full (at once, in two processes).

The changed services are then checked in a small spec made from the new text: the header, the
changed services and those their IR depends on (their callees and mirror targets, the services
the gateways route to, and any segment defining an anchor they use) kept as they are, the
services these (or `analysis.entryPoints`) name as one-line placeholders (name, port, protocol,
image or endpoints and TLS, from the base IR), and every other line blank: line and column numbers are the new text's. It goes through
the normal loader, structural and semantic checks and resolver; any diagnostic there sends the
check to the full path (which reports it exactly as a full check does). Each changed service's
IR is taken from it, with who may call it (`allowed_callers`, made from the other services) from
the base IR; every other service is the base IR's. The size checks run again for the changed
services; the analysis is not run again: it reads only what callers see. `incremental_check`
also gives the small spec as loaded: the changed services' document and positions, as the new
text writes them (meshc diff locates changed fields in it).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.diagnostics import Diagnostic
from meshc.load import Loaded, SpecSource, load_yaml
from meshc.load.source import MAX_SPEC_BYTES
from meshc.pipeline import Checked, callees_of, check_sizes, mesh_wide, no_cycle_collection
from meshc.resolve import ir, resolve
from meshc.validate.semantic import check_semantics
from meshc.validate.structural import check_structure

# A service's fields that only its own pods use (DESIGN 11's workloads, its image and replicas).
SERVICE_LOCAL = frozenset({
    "image", "replicas", "resources", "env", "command", "args", "probes", "volumes", "securityContext",
    "initContainers", "pod", "autoscaling", "disruptionBudget",
})
# A version's: its name and weight are what callers route by, and stay the same.
VERSION_LOCAL = frozenset({"image", "replicas", "resources", "env", "command", "args"})
# More changed services than this: a full check (the small spec would not be small).
MAX_CHANGED = 16

# A changed segment holding any of these is not checked incrementally: an anchor (others may use
# it), a tag, a merge key. A conservative scan: the characters anywhere (in a string too) count.
_UNSAFE = re.compile(r"&|!|<<")
_ALIAS = re.compile(r"\*([^\s,\[\]{}]+)")


@dataclass(frozen=True)
class Layout:
    """A spec's text cut at line starts: `spec.services`' entries (segments, [start, end) offsets
    into the text) and the rest (the header); `first_lines`: each segment's first line, 0-based."""

    text: str
    segments: tuple[tuple[int, int], ...]
    first_lines: tuple[int, ...]

    @property
    def header(self) -> tuple[str, str]:
        return self.text[:self.segments[0][0]], self.text[self.segments[-1][1]:]

    def segment(self, index: int) -> str:
        start, end = self.segments[index]
        return self.text[start:end]

    def lines(self, index: int) -> tuple[int, int]:
        """The segment's lines, [first, end) 0-based."""
        start, end = self.segments[index]
        return self.first_lines[index], self.first_lines[index] + self.text.count("\n", start, end)


_SPEC = re.compile(r"spec:[ ]*(?:#[^\n]*)?(?=\n|$)")
_CONTENT = re.compile(r"^( *)[^ #\n]", re.MULTILINE)      # a line with something but a comment


def layout(text: str) -> Layout | None:
    """The segments of `text`; None when its `spec.services` is not a block sequence this
    line-based reading understands (flow style, quoted keys, tabs, no services...). Regular
    expressions over the whole text, each starting with a newline (which the engine finds fast):
    5,000 services are 100,000 lines."""
    if "\r" in text or "\t" in text:
        return None
    specs = [at for at in _line_starts(text, "spec:") if _SPEC.match(text, at)]
    if len(specs) != 1:
        return None
    child = _CONTENT.search(text, specs[0] + len("spec:"))
    if child is None or not child.group(1):
        return None
    indent = len(child.group(1))
    top = re.compile(r"\n[^ #\n]").search(text, child.start())
    spec_end = top.start() + 1 if top is not None else len(text)
    keys = list(re.compile(r"\n {%d}services:[ ]*(?:#[^\n]*)?(?=\n|$)" % indent).finditer(
        text, child.start() - 1, spec_end))
    if len(keys) != 1:
        return None
    first = _CONTENT.search(text, keys[0].end())
    if first is None or first.start() >= spec_end or len(first.group(1)) < indent:
        return None
    items = len(first.group(1))
    if not re.compile(r" {%d}-(?: |\n|$)" % items).match(text, first.start()):
        return None
    over = re.compile(r"\n(?: {0,%d}[^ #\n]| {%d}(?:[^ #\n-]|-[^ \n]))" % (items - 1, items))
    after = over.search(text, first.start())
    end = after.start() + 1 if after is not None else len(text)
    item = re.compile(r"\n {%d}-(?= |\n|$)" % items)
    starts = [first.start(), *(m.start() + 1 for m in item.finditer(text, first.start(), end))]
    # trailing blank and comment lines belong to the header, not to the last entry
    while end > starts[-1]:
        previous = text.rfind("\n", starts[-1], end - 1) + 1
        if previous <= starts[-1] or _CONTENT.match(text, previous, end):
            break
        end = previous
    bounds = [*starts, end]
    first_lines = [text.count("\n", 0, starts[0])]
    for a, b in zip(starts, starts[1:]):
        first_lines.append(first_lines[-1] + text.count("\n", a, b))
    return Layout(text, tuple(zip(bounds[:-1], bounds[1:])), tuple(first_lines))


def _line_starts(text: str, prefix: str) -> list[int]:
    """Where the lines starting with `prefix` start."""
    found = [0] if text.startswith(prefix) else []
    at = text.find("\n" + prefix)
    while at != -1:
        found.append(at + 1)
        at = text.find("\n" + prefix, at + 1)
    return found


def etcd_prefix_hint(source: SpecSource) -> str | None:
    """The etcd prefix the spec declares, read from its header alone (without its services): to
    find the commit etcd records as applied before the spec is checked. None when the header
    cannot be read so; a hint only, which the check's own `etcd_prefix` confirms."""
    try:
        text = source.data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    spec = layout(text)
    if spec is None:
        return None
    before, after = spec.header
    loaded = load_yaml(SpecSource(source.name, (before + after).encode()))
    data = loaded.data
    if loaded.diagnostics or not isinstance(data, dict):
        return None
    metadata, body = data.get("metadata"), data.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    etcd = body.get("etcd") if isinstance(body, dict) else None
    prefix = etcd.get("prefix") if isinstance(etcd, dict) else None
    if isinstance(prefix, str) and prefix:
        return prefix
    return f"/meshc/{name}" if isinstance(name, str) and name else None


# --- the check -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextEdit:
    """Two texts of a spec that may be checked one from the other: the same header, as many
    segments, at most MAX_CHANGED of them `changed` (indexes), each keeping its line count and
    holding no anchor, tag or merge key on either side. What `edit_between` finds from the texts
    alone, before anything is loaded."""

    old: Layout
    new: Layout
    changed: tuple[int, ...]


@dataclass(frozen=True)
class Incremental:
    """An incremental check, and what a tool pointing into the new text needs of it (meshc diff).

    `changed`: the services of the changed segments (every other service is the base's IR, and
    is written in the new text exactly where the base's text writes it). `loaded`: the small spec
    as loaded, which holds the header and the changed services as the new text writes them, with
    the new text's lines and columns; None when the new text is the base's."""

    checked: Checked
    changed: frozenset[str]
    loaded: Loaded | None


def edit_between(old: SpecSource, new: SpecSource) -> TextEdit | None:
    """The segments that differ between the two texts, when the text alone allows checking the
    new one from a check of the old one (see the module); None when it does not, or when the texts
    are the same. Cheap (regular expressions over both texts): for a caller choosing how to
    check before it checks anything."""
    if old.name != new.name or len(new.data) > MAX_SPEC_BYTES or len(old.data) > MAX_SPEC_BYTES \
            or new.data.startswith(b"\xef\xbb\xbf") or new.data == old.data:
        return None
    try:
        new_text, old_text = new.data.decode("utf-8"), old.data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    after, before = layout(new_text), layout(old_text)
    if after is None or before is None or after.header != before.header or len(after.segments) != len(before.segments):
        return None
    changed = tuple(i for i in range(len(after.segments)) if after.segment(i) != before.segment(i))
    if not changed or len(changed) > MAX_CHANGED:
        return None
    for index in changed:
        if before.lines(index) != after.lines(index) or _UNSAFE.search(before.segment(index) + after.segment(index)):
            return None
        was, now = _loaded_entry(before, index), _loaded_entry(after, index)
        # no more keys and values than before: the whole file stays within the loader's MAX_NODES
        if not _local_change(was, now) or _nodes(now) > _nodes(was):
            return None
    return TextEdit(before, after, changed)


@no_cycle_collection
def check_from(source: SpecSource, base: Checked) -> Checked | None:
    """The check of `source` made from `base` (a clean check of an earlier text of the same spec),
    equal to `pipeline.check(source)`; None when it cannot be made incrementally (see the module)."""
    made = incremental_check(source, base)
    return made.checked if made is not None else None


@no_cycle_collection
def incremental_check(source: SpecSource, base: Checked, edit: TextEdit | None = None) -> Incremental | None:
    """`check_from`, with the small spec it loaded and the services it checked again. `edit`:
    what `edit_between(base.source, source)` gave, when the caller has it."""
    if base.mesh is None or not base.ok or base.source.name != source.name or len(source.data) > MAX_SPEC_BYTES:
        return None
    if source.data == base.source.data:
        return Incremental(dataclasses.replace(base, source=source), frozenset(), None)
    edit = edit if edit is not None else edit_between(base.source, source)
    if edit is None:
        return None
    return _checked(source, base, base.mesh, edit)


def _checked(source: SpecSource, base: Checked, mesh: ir.Mesh, edit: TextEdit) -> Incremental | None:
    old, new, changed = edit.old, edit.new, list(edit.changed)
    names = _segment_names(mesh, old)
    if names is None:
        return None
    for index in changed:
        first, end = old.lines(index)
        if any((d.span is not None and first < d.span.line <= end) or d.path[:3] == ("spec", "services", index)
               for d in base.diagnostics):
            return None
    by_name = {service.name: service for service in mesh.services}
    kept = _kept_in_full(mesh, new, changed, names, by_name)
    small = _small_spec(source, new, kept, names, by_name, mesh)
    loaded, resolved = _resolved(small)
    if loaded is None or resolved is None or mesh_wide(resolved) != mesh_wide(mesh):
        return None
    fresh = {service.name: service for service in resolved.services}
    renewed = {}
    for index in changed:
        name = names[index]
        if name not in fresh:
            return None
        renewed[name] = dataclasses.replace(fresh[name], allowed_callers=by_name[name].allowed_callers)
    spliced = dataclasses.replace(mesh, services=tuple(renewed.get(s.name, s) for s in mesh.services))
    if check_sizes(spliced, only=frozenset(renewed)):   # with the options pipeline.check uses
        return None     # over a size limit: the full check reports it
    return Incremental(Checked(source, base.diagnostics, spliced), frozenset(renewed), loaded)


def old_entries(old: SpecSource, edit: TextEdit, mesh: ir.Mesh) -> tuple[frozenset[str], Loaded] | None:
    """The services the edit changed, named by `mesh` (the IR of `old`, the edit's old text), and its
    document holding them: its header and their segments (with those defining anchors they use)
    at the old text's lines and columns, every other line blank. For a tool pointing into the
    old text without loading all of it (meshc diff, with the old check kept); None when the text
    cannot be read so."""
    names = _segment_names(mesh, edit.old)
    kept = _anchor_segments(edit.old, edit.changed)
    if names is None or kept is None:
        return None
    kept |= set(edit.changed)
    whole = edit.old.text
    pieces = [whole[:edit.old.segments[0][0]]]
    for index, (start, end) in enumerate(edit.old.segments):
        pieces.append(whole[start:end] if index in kept else "\n" * whole.count("\n", start, end))
    pieces.append(whole[edit.old.segments[-1][1]:])
    loaded = load_yaml(SpecSource(old.name, "".join(pieces).encode(), old.revision))
    if loaded.diagnostics or loaded.data is None:
        return None
    return frozenset(names[i] for i in edit.changed), loaded


def _segment_names(mesh: ir.Mesh, layout_: Layout) -> list[str] | None:
    """The service each segment of the base text declares, by the base IR's spans (a service's
    span is where its entry's mapping starts)."""
    found: list[list[str]] = [[] for _ in layout_.segments]
    for service in mesh.services:
        index = bisect.bisect_right(layout_.first_lines, service.span.line - 1) - 1
        if index < 0 or service.span.line > layout_.lines(index)[1]:
            return None
        found[index].append(service.name)
    if any(len(names) != 1 for names in found):
        return None
    return [names[0] for names in found]


def _loaded_entry(text: Layout, index: int) -> Any:
    """A segment's entry as meshc's loader reads it, with the segments that define the anchors it
    uses before it; None when it cannot be read alone so."""
    definers = _anchor_segments(text, [index])
    if definers is None:
        return None
    entries = "".join(text.segment(i) for i in sorted(definers | {index}))
    loaded = load_yaml(SpecSource("<segment>", entries.encode()))
    if loaded.diagnostics or not isinstance(loaded.data, list) or len(loaded.data) != len(definers) + 1:
        return None
    return loaded.data[-1]


def _anchor_segments(text: Layout, indexes: Iterable[int]) -> set[int] | None:
    """The segments, other than `indexes`, defining the anchors that `indexes` use (and those
    their definitions use); None when an alias is defined nowhere before its use but the header."""
    found: set[int] = set()
    starts = [start for start, _ in text.segments]
    todo = list(indexes)
    while todo:
        index = todo.pop()
        start = text.segments[index][0]
        for alias in set(_ALIAS.findall(text.segment(index))):
            anchor = re.compile(r"&" + re.escape(alias) + r"(?![^\s,\[\]{}])")
            definitions = [m.start() for m in anchor.finditer(text.text, 0, start)]
            if not definitions:
                return None
            definer = bisect.bisect_right(starts, definitions[-1]) - 1
            if definer < 0:   # in the header: loaded with the small spec, never alone
                return None
            if definer not in found:
                found.add(definer)
                todo.append(definer)
    return found - set(indexes)


def _local_change(old: Any, new: Any) -> bool:
    """Whether two loaded entries of a service differ only in fields its own pods use."""
    if not isinstance(old, dict) or not isinstance(new, dict) or not _same(old.get("name"), new.get("name")):
        return False
    for key in old.keys() | new.keys():
        if key in old and key in new and _same(old[key], new[key]):
            continue
        if key == "versions" and _local_versions(old.get(key), new.get(key)):
            continue
        if key not in SERVICE_LOCAL:
            return False
    return True


def _local_versions(old: Any, new: Any) -> bool:
    if not isinstance(old, list) or not isinstance(new, list) or len(old) != len(new):
        return False
    for before, after in zip(old, new):
        if not isinstance(before, dict) or not isinstance(after, dict):
            return False
        for key in before.keys() | after.keys():
            if key in before and key in after and _same(before[key], after[key]):
                continue
            if key not in VERSION_LOCAL:
                return False
    return True


def _nodes(data: Any) -> int:
    """Keys, values and collections, as the loader counts them against MAX_NODES."""
    if isinstance(data, dict):
        return 1 + sum(1 + _nodes(value) for value in data.values())
    if isinstance(data, list):
        return 1 + sum(_nodes(item) for item in data)
    return 1


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (1 and True, 80 and 80.0 differ to the models)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _kept_in_full(mesh: ir.Mesh, text: Layout, changed: list[int], names: Sequence[str],
                  by_name: Mapping[str, ir.Service]) -> set[int] | None:
    """The segments the small spec keeps as written: the changed ones, their callees (their
    routes and policies shape the changed services' upstreams), the services the gateways route
    to, and the segments defining anchors any of these use."""
    index_of = {name: i for i, name in enumerate(names)}
    wanted = {names[i] for i in changed}
    for name in list(wanted):
        wanted |= callees_of(by_name[name])
    for gateway in mesh.gateways:
        wanted.update(gateway.services)
    kept = {index_of[name] for name in wanted if name in index_of}
    definers = _anchor_segments(text, kept)
    return None if definers is None else kept | definers


def _small_spec(source: SpecSource, text: Layout, kept: set[int] | None, names: Sequence[str],
                by_name: Mapping[str, ir.Service], mesh: ir.Mesh) -> SpecSource | None:
    """The new text with only the `kept` segments as written, a one-line placeholder for each
    service they (or the analysis' entry points) name, and every other line blank."""
    if kept is None:
        return None
    named: set[str] = set(mesh.analysis.entry_points or ())
    for index in kept:
        named |= callees_of(by_name[names[index]])
    whole = text.text
    pieces = [whole[:text.segments[0][0]]]
    for index, (start, end) in enumerate(text.segments):
        if index in kept:
            pieces.append(whole[start:end])
            continue
        blank = "\n" * whole.count("\n", start, end)
        if names[index] in named:
            indent = _indent_at(whole, start)
            blank = " " * indent + "- " + json.dumps(_placeholder(by_name[names[index]])) + blank
        pieces.append(blank)
    pieces.append(whole[text.segments[-1][1]:])
    return SpecSource(source.name, "".join(pieces).encode(), source.revision)


def _indent_at(text: str, start: int) -> int:
    at = start
    while at < len(text) and text[at] == " ":
        at += 1
    return at - start


def _placeholder(service: ir.Service) -> dict[str, Any]:
    """What the small spec needs of a service another one calls: its name, port and protocol,
    and an image or the endpoints (and TLS) that make it deployed or external."""
    entry: dict[str, Any] = {"name": service.name}
    if service.port is not None:
        entry["port"] = service.port
    entry["protocol"] = str(getattr(service.protocol, "value", service.protocol))
    if service.deployed:
        entry["image"] = next((v.image for v in service.versions if v.image), "placeholder")
    else:
        entry["endpoints"] = [{"address": e.address, "port": e.port} for e in service.endpoints]
        if service.external_tls is not None:
            entry["tls"] = {"sni": service.external_tls.sni}
    return entry


def _resolved(small: SpecSource | None) -> tuple[Loaded | None, ir.Mesh | None]:
    """The small spec as loaded, and its IR, when it loads, validates and checks without a single
    diagnostic; (None, None) when it does not."""
    if small is None:
        return None, None
    loaded = load_yaml(small)
    if loaded.diagnostics or loaded.data is None:
        return None, None
    model, structural = check_structure(loaded.data, loaded.positions)
    if model is None or structural:
        return None, None
    semantic: list[Diagnostic] = check_semantics(model, loaded.positions)
    if semantic:
        return None, None
    return loaded, resolve(model, loaded.positions)
