"""Who may call whom: the authorization the call graph grants, compared between revisions and drawn.

Under zero trust a new `upstreams` entry is a new permission (the callee's sidecar admits the
caller's identity, its NetworkPolicy admits the caller's pods), and an `extraCallers` entry is one
from outside the graph; a reviewer should see those, and mTLS mode changes, on their own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from meshc.diagnostics import Span
from meshc.resolve import ir
from meshc.review.graph import CallGraph, Edge, Node


@dataclass(frozen=True, slots=True)
class Permission:
    caller: str                   # a mesh service, or `namespace/serviceAccount` for an extra caller
    callee: str
    identity: str                 # the caller's SPIFFE ID
    span: Span


@dataclass(frozen=True, slots=True)
class AccessView:
    """One revision's authorization: permissions by (callee, caller identity), and each service's mode."""

    permissions: dict[tuple[str, str], Permission]
    modes: dict[str, str]         # deployed service -> strict | permissive | off
    mode_spans: dict[str, Span]


@dataclass(frozen=True, slots=True)
class AccessChange:
    action: str                   # granted | revoked | mode
    caller: str | None            # None for a mode change
    callee: str
    identity: str | None
    old_mode: str | None
    new_mode: str | None
    span: Span | None             # in the revision that has it (the new one, except for revoked)

    def describe(self) -> str:
        if self.action == "mode":
            return f"{self.callee}: mtls {self.old_mode or 'absent'} -> {self.new_mode or 'absent'}"
        verb = "may now call" if self.action == "granted" else "may no longer call"
        return f"{self.caller} {verb} {self.callee} ({self.identity})"


def caller_label(caller: ir.Caller) -> str:
    if caller.gateway is not None:
        return caller.identity.service_account      # gateway-<name>
    return caller.service or f"{caller.identity.namespace}/{caller.identity.service_account}"


def view(mesh: ir.Mesh, only: Collection[str] | None = None) -> AccessView:
    """The mesh's authorization; `only`: that of these services as callees (a service's permissions
    and mode are its own fields, so two revisions' views differ only in the services that do)."""
    services = [s for s in mesh.deployed_services if only is None or s.name in only]
    permissions = {(service.name, caller.identity.spiffe_id): Permission(caller_label(caller), service.name,
                                                                          caller.identity.spiffe_id, caller.span)
                   for service in services for caller in service.allowed_callers
                   if service.mtls is not ir.MtlsMode.OFF}
    return AccessView(permissions, {s.name: s.mtls.value for s in services}, {s.name: s.span for s in services})


def access_changes(old: AccessView | None, new: AccessView | None) -> tuple[AccessChange, ...]:
    """Granted and revoked permissions, and mode changes, sorted by callee then caller."""
    before = old or AccessView({}, {}, {})
    after = new or AccessView({}, {}, {})
    return tuple(sorted(_changes(before, after), key=lambda c: (c.callee, c.action != "mode", c.caller or "")))


def _changes(before: AccessView, after: AccessView) -> Iterator[AccessChange]:
    for key in after.permissions.keys() - before.permissions.keys():
        granted = after.permissions[key]
        yield AccessChange("granted", granted.caller, granted.callee, granted.identity, None, None, granted.span)
    for key in before.permissions.keys() - after.permissions.keys():
        revoked = before.permissions[key]
        yield AccessChange("revoked", revoked.caller, revoked.callee, revoked.identity, None, None, revoked.span)
    for service in sorted(before.modes.keys() | after.modes.keys()):
        was, now = before.modes.get(service), after.modes.get(service)
        if was != now and was is not None and now is not None:
            yield AccessChange("mode", None, service, None, was, now, after.mode_spans.get(service))


# --- the authorization picture ------------------------------------------------------------

def authorization_graph(mesh: ir.Mesh) -> CallGraph:
    """Nodes: deployed services with their identity and mode, and extra callers; an edge for every
    identity a service admits (dashed: plaintext is admitted too, or mtls is off)."""
    nodes = [Node(s.name, (s.name, f"mtls {s.mtls.value}", *( (s.identity.spiffe_id,) if s.identity else ())),
                  False, False) for s in mesh.deployed_services]
    outsiders = sorted({(caller_label(c), c.gateway is not None) for s in mesh.deployed_services
                        for c in s.allowed_callers if c.service is None})
    nodes += [Node(_node_name(label), (label, "ingress gateway" if gateway else "outside the call graph"),
                   not gateway, True) for label, gateway in outsiders]
    edges = []
    for service in mesh.deployed_services:
        enforced = service.mtls is ir.MtlsMode.STRICT
        label = {ir.MtlsMode.STRICT: "mTLS, allowed", ir.MtlsMode.PERMISSIVE: "mTLS or plaintext (permissive)",
                 ir.MtlsMode.OFF: "plaintext, not checked"}[service.mtls]
        edges += [Edge(_node_name(caller_label(c)), service.name, (label,), not enforced)
                  for c in service.allowed_callers]
    return CallGraph(f"{mesh.name}-access", tuple(nodes), tuple(edges))


def _node_name(label: str) -> str:
    """A node name the renderers can use as an id: `namespace/serviceAccount` becomes
    `extra--namespace--serviceAccount` (dots to dashes); mesh services keep their names."""
    if "/" not in label:
        return label
    namespace, account = label.split("/", 1)
    return f"extra--{namespace}--{account.replace('.', '-')}"
