"""Meaning across the spec: references, uniqueness, weights, ports, contradictions.

Each check is one small function from the validated model to diagnostics; CHECKS lists them in
the order they run. All of them run, so a user sees every problem at once.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.diagnostics import Diagnostic, Path, Span, error, warning
from meshc.load import Positions
from meshc import object_names
from meshc import defaults as builtin
from meshc.defaults import IMPLICIT_VERSION
from meshc.object_names import RESERVED_SERVICE_NAMES
from meshc.validate.models import LoadBalancer, Mesh, Retries, Service
from meshc.vocabulary import HASH_POLICIES, RETRY_ON, FailurePolicy, LbPolicy, Protocol

MAX_K8S_NAME = 63


@dataclass(frozen=True, slots=True)
class Context:
    mesh: Mesh
    positions: Positions

    def at(self, *path: str | int) -> Span:
        return self.positions.value(path)

    def key(self, *path: str | int) -> Span:
        return self.positions.key(path)


def services(ctx: Context) -> Iterator[tuple[Path, Service]]:
    for index, service in enumerate(ctx.mesh.spec.services):
        yield ("spec", "services", index), service


def _hint(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def duplicate_services(ctx: Context) -> Iterator[Diagnostic]:
    yield from _duplicate_names([(path, service.name) for path, service in services(ctx)], ctx.positions)


def _duplicate_names(named: list[tuple[Path, str]], positions: Positions) -> Iterator[Diagnostic]:
    first: dict[str, int] = {}
    for path, name in named:
        where = path + ("name",)
        if name in first:
            yield error("E202", f"service '{name}' is defined twice (first on line {first[name]})",
                        positions.value(where), where)
        first.setdefault(name, positions.value(where).line)


def unknown_upstreams(ctx: Context) -> Iterator[Diagnostic]:
    calls = [(path + ("upstreams", index), service.name, upstream.service)
             for path, service in services(ctx) for index, upstream in enumerate(service.upstreams)]
    yield from _unknown_callees(calls, {s.name for s in ctx.mesh.spec.services}, ctx.positions)


# "Did you mean" is looked for for this many misspelt names at most, and for fewer in a huge mesh:
# each search compares the name with every service, and a hostile spec can hold 100,000 of each.
MAX_SPELLING_HINTS = 20
MAX_SPELLING_COMPARISONS = 200_000


def _unknown_callees(calls: Sequence[tuple[Path, str, str]], names: set[str],
                     positions: Positions) -> Iterator[Diagnostic]:
    hints_left = min(MAX_SPELLING_HINTS, MAX_SPELLING_COMPARISONS // max(len(names), 1))
    for path, caller, callee in calls:
        if callee not in names:
            where = path + ("service",)
            hint = _hint(callee, names) if hints_left > 0 else None
            hints_left -= 1
            suffix = f"; did you mean '{hint}'?" if hint else ""
            yield error("E201", f"service '{caller}' calls '{callee}', which is not a service of this mesh{suffix}",
                        positions.value(where), where, hint)


def duplicate_versions(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        seen: set[str] = set()
        for index, version in enumerate(service.versions or ()):
            if version.name in seen:
                where = path + ("versions", index, "name")
                yield error("E203", f"service '{service.name}' has two versions named '{version.name}'",
                            ctx.at(*where), where)
            seen.add(version.name)


def duplicate_local_ports(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        owners: dict[int, str] = {}
        for index, upstream in enumerate(service.upstreams):
            where = path + ("upstreams", index, "localPort")
            if upstream.local_port in owners:
                yield error("E204", f"localPort {upstream.local_port} of '{service.name}' is already used for "
                            f"'{owners[upstream.local_port]}'", ctx.at(*where), where)
            owners.setdefault(upstream.local_port, upstream.service)


def local_port_clashes(ctx: Context) -> Iterator[Diagnostic]:
    proxy = ctx.mesh.spec.proxy
    taken = {proxy.admin_port: "the proxy adminPort", proxy.inbound_port: "the proxy inboundPort",
             proxy.stats_port: "the proxy statsPort"}
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            where = path + ("upstreams", index, "localPort")
            clash = f"the application port of '{service.name}'" if upstream.local_port == service.port else \
                taken.get(upstream.local_port)
            if clash:
                yield error("E205", f"localPort {upstream.local_port} clashes with {clash}", ctx.at(*where), where)


def proxy_port_clashes(ctx: Context) -> Iterator[Diagnostic]:
    proxy = ctx.mesh.spec.proxy
    ports = (("adminPort", proxy.admin_port), ("inboundPort", proxy.inbound_port), ("statsPort", proxy.stats_port))
    seen: dict[int, str] = {}
    for field, port in ports:
        if port in seen:
            yield error("E214", f"proxy {field} {port} is the same as {seen[port]}",
                        ctx.at("spec", "proxy", field), ("spec", "proxy", field))
        seen.setdefault(port, field)
    for path, service in services(ctx):
        if service.endpoints is None and service.port in seen:
            yield error("E214", f"service '{service.name}' listens on port {service.port}, which its sidecar uses "
                        f"as {seen[service.port]}", ctx.at(*path, "port"), path + ("port",))


def version_weights(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        versions = service.versions or []
        weights = [v.weight for v in versions]
        if len(versions) > 1 and any(w is None for w in weights):
            if all(w is None for w in weights):
                yield error("E218", f"service '{service.name}' has {len(versions)} versions but no weights; set a "
                            "weight (percent) on each version", ctx.key(*path, "versions"), path + ("versions",))
                continue
            index = weights.index(None)
            where = path + ("versions", index)
            yield error("E218", f"version '{versions[index].name}' of '{service.name}' has no weight while other "
                        "versions do", ctx.at(*where), where)
            continue
        total = sum(w for w in weights if w is not None)
        if versions and weights[0] is not None and total != 100:
            yield error("E206", f"version weights of '{service.name}' sum to {total}, not 100",
                        ctx.key(*path, "versions"), path + ("versions",),
                        hint="weights are percentages of requests")
        for index, version in enumerate(versions):
            if version.weight == 0 and len(versions) > 1:
                where = path + ("versions", index, "weight")
                yield warning("W204", f"version '{version.name}' of '{service.name}' has weight 0 and receives no "
                              "traffic", ctx.at(*where), where)


def effective_lb(ctx: Context, service: Service) -> tuple[LoadBalancer | None, bool]:
    """The service's load balancer, and whether it was inherited from spec.defaults."""
    if service.load_balancer is not None:
        return service.load_balancer, False
    return ctx.mesh.spec.defaults.load_balancer, True


def _lb_span(ctx: Context, path: Path, inherited: bool) -> tuple[Span, Path, str]:
    if inherited:
        return ctx.at("spec", "defaults", "loadBalancer"), ("spec", "defaults", "loadBalancer"), " (from spec.defaults)"
    return ctx.at(*path, "loadBalancer"), path + ("loadBalancer",), ""


def weighted_needs_weights(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        lb, inherited = effective_lb(ctx, service)
        if lb is None or lb.policy is not LbPolicy.WEIGHTED:
            continue
        if any(e.weight is not None for e in service.endpoints or ()):
            continue
        span, where, origin = _lb_span(ctx, path, inherited)
        if inherited:
            span, where = ctx.at(*path, "name"), path + ("name",)
        yield error("E207", f"service '{service.name}' uses weighted load balancing{origin} but nothing carries a "
                    "weight", span, where,
                    hint="give its static endpoints a weight, or use round_robin / least_request; "
                    "version weights split traffic between versions with any policy")


def hash_lb_needs_key(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        lb, inherited = effective_lb(ctx, service)
        if lb is None:
            continue
        span, where, origin = _lb_span(ctx, path, inherited)
        has_key = lb.hash_on is not None and (lb.hash_on.header is not None or bool(lb.hash_on.source_ip))
        if lb.policy in HASH_POLICIES and not has_key:
            yield error("E208", f"service '{service.name}' uses {lb.policy.value}{origin} without a hash key",
                        span, where, hint="add hashOn: {header: x-user-id} or hashOn: {sourceIp: true}")
        elif lb.policy not in HASH_POLICIES and lb.hash_on is not None and not inherited:
            yield warning("W202", f"hashOn has no effect with {lb.policy.value}; it needs ring_hash or maglev",
                          ctx.at(*where, "hashOn"), where + ("hashOn",))


def hash_key_complete(ctx: Context) -> Iterator[Diagnostic]:
    for path, lb in _explicit_lbs(ctx):
        hash_on = lb.hash_on
        if hash_on is not None and hash_on.header is not None and hash_on.source_ip:
            yield error("E110", "hashOn takes one key: header or sourceIp, not both", ctx.at(*path, "hashOn"),
                        path + ("hashOn",))


def _explicit_lbs(ctx: Context) -> Iterator[tuple[Path, LoadBalancer]]:
    if ctx.mesh.spec.defaults.load_balancer is not None:
        yield ("spec", "defaults", "loadBalancer"), ctx.mesh.spec.defaults.load_balancer
    for path, service in services(ctx):
        if service.load_balancer is not None:
            yield path + ("loadBalancer",), service.load_balancer


def endpoint_weights_ignored(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        lb, _ = effective_lb(ctx, service)
        policy = lb.policy if lb else LbPolicy.ROUND_ROBIN
        weighted = [i for i, e in enumerate(service.endpoints or ()) if e.weight is not None]
        if weighted and policy is LbPolicy.RANDOM:
            where = path + ("endpoints", weighted[0], "weight")
            yield warning("W203", f"endpoint weights of '{service.name}' are ignored by random load balancing; use "
                          "weighted", ctx.at(*where), where)


def static_endpoints_exclusive(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is None:
            continue
        for field, value in (("versions", service.versions), ("image", service.image), ("replicas", service.replicas)):
            if value is not None:
                yield error("E209", f"service '{service.name}' has static endpoints (it runs outside the mesh), so "
                            f"it cannot also have {field}", ctx.key(*path, field), path + (field,))


def duplicate_endpoints(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        seen: set[tuple[str, int]] = set()
        for index, endpoint in enumerate(service.endpoints or ()):
            if (endpoint.address, endpoint.port) in seen:
                where = path + ("endpoints", index)
                yield error("E215", f"endpoint {endpoint.address}:{endpoint.port} of '{service.name}' is listed twice",
                            ctx.at(*where), where)
            seen.add((endpoint.address, endpoint.port))


def external_without_upstreams(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is not None and service.upstreams:
            yield error("E217", f"service '{service.name}' has static endpoints and runs outside the mesh without a "
                        "sidecar, so it cannot declare upstreams", ctx.key(*path, "upstreams"), path + ("upstreams",))


def deployed_needs_image(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is not None or service.image is not None:
            continue
        if not service.versions:
            yield error("E210", f"service '{service.name}' is deployed but has no image (or static endpoints)",
                        ctx.at(*path, "name"), path + ("name",),
                        hint="set image on the service or on each version, or list static endpoints")
            continue
        for index, version in enumerate(service.versions):
            if version.image is None:
                where = path + ("versions", index)
                yield error("E210", f"version '{version.name}' of '{service.name}' has no image, and the service "
                            "sets none to inherit", ctx.at(*where), where)


def retry_on_known(ctx: Context) -> Iterator[Diagnostic]:
    places: list[tuple[Path, list[str] | None]] = []
    if ctx.mesh.spec.defaults.retries is not None:
        places.append((("spec", "defaults", "retries"), ctx.mesh.spec.defaults.retries.retry_on))
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            if upstream.retries is not None:
                places.append((path + ("upstreams", index, "retries"), upstream.retries.retry_on))
    for where, conditions in places:
        for index, condition in enumerate(conditions or ()):
            if condition not in RETRY_ON:
                item = where + ("retryOn", index)
                hint = _hint(condition, RETRY_ON)
                suffix = f"; did you mean '{hint}'?" if hint else ""
                yield error("E211", f"'{condition}' is not a retryOn condition Envoy knows{suffix}",
                            ctx.at(*item), item, hint or ", ".join(sorted(RETRY_ON)))


def fail_fast_without_retries(ctx: Context) -> Iterator[Diagnostic]:
    default = ctx.mesh.spec.defaults.failure_policy
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            policy = upstream.failure_policy or default
            if policy is not FailurePolicy.FAIL_FAST or upstream.retries is None:
                continue
            where = path + ("upstreams", index, "retries")
            origin = "" if upstream.failure_policy else " (from spec.defaults)"
            yield error("E212", f"upstream '{upstream.service}' of '{service.name}' is fail_fast{origin} but sets "
                        "retries; fail_fast means no retries", ctx.key(*where), where,
                        hint="remove retries, or use failurePolicy: retry")


def backoff_order(ctx: Context) -> Iterator[Diagnostic]:
    places: list[tuple[Path, object]] = [(("spec", "defaults", "retries"), ctx.mesh.spec.defaults.retries)]
    for path, service in services(ctx):
        places += [(path + ("upstreams", i, "retries"), u.retries) for i, u in enumerate(service.upstreams)]
    for where, retries in places:
        backoff = getattr(retries, "backoff", None)
        if backoff is not None and backoff.max_interval is not None and backoff.max_interval < backoff.base_interval:
            item = where + ("backoff", "maxInterval")
            yield error("E221", "backoff maxInterval is shorter than baseInterval", ctx.at(*item), item)


def retry_settings_without_attempts(ctx: Context) -> Iterator[Diagnostic]:
    """retryOn, perTryTimeout or backoff where no retry happens (attempts: 0) are dropped: say so."""
    defaults = ctx.mesh.spec.defaults.retries
    default_attempts = defaults.attempts if defaults is not None and defaults.attempts is not None else \
        builtin.RETRY_ATTEMPTS
    blocks: list[tuple[Path, Retries, int]] = []
    retrying_upstream = False
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            retries = upstream.retries
            attempts = retries.attempts if retries is not None and retries.attempts is not None else default_attempts
            retrying_upstream |= attempts > 0 and retries is not None and retries.attempts is not None
            if retries is not None:
                blocks.append((path + ("upstreams", index, "retries"), retries, attempts))
    if defaults is not None and not retrying_upstream:
        blocks.insert(0, (("spec", "defaults", "retries"), defaults, default_attempts))
    for where, retries, attempts in blocks:
        unused = [name for name, value in (("retryOn", retries.retry_on), ("perTryTimeout", retries.per_try_timeout),
                                           ("backoff", retries.backoff)) if value is not None]
        if attempts == 0 and unused:
            origin = "" if retries.attempts is not None else " (attempts: 0 from spec.defaults)"
            yield warning("W209", f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect with "
                          f"attempts: 0{origin}: no request is retried", ctx.key(*where, unused[0]),
                          where + (unused[0],), hint="set attempts, or remove these settings")


def health_check_path(ctx: Context) -> Iterator[Diagnostic]:
    """HTTP services are checked with GET <path>; gRPC ones speak gRPC Health, tcp ones connect."""
    for path, service in services(ctx):
        check = service.health_check
        if check is not None and check.path is None and service.protocol in (Protocol.HTTP, Protocol.HTTP2):
            yield error("E102", f"missing required field 'path' in the healthCheck of '{service.name}': "
                        f"{service.protocol.value} services are checked with an HTTP GET of that path",
                        ctx.at(*path, "healthCheck"), path + ("healthCheck", "path"))


def health_check_timing(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        check = service.health_check
        if check is not None and check.timeout >= check.interval:
            where = path + ("healthCheck", "timeout")
            yield warning("W206", f"health check timeout of '{service.name}' is not shorter than its interval",
                          ctx.at(*where), where)


def tcp_route_policies(ctx: Context) -> Iterator[Diagnostic]:
    protocols = {s.name: s.protocol for s in ctx.mesh.spec.services}
    for path, service in services(ctx):
        for index, upstream in enumerate(service.upstreams):
            if protocols.get(upstream.service) is not Protocol.TCP:
                continue
            for field in ("retries", "timeout"):
                if getattr(upstream, field) is not None:
                    where = path + ("upstreams", index, field)
                    yield warning("W207", f"'{upstream.service}' speaks tcp: {field} on this upstream does not apply",
                                  ctx.key(*where), where)


def tcp_hash_header(ctx: Context) -> Iterator[Diagnostic]:
    """tcp_proxy sees no headers: hashing a tcp service's connections on one keeps nobody anywhere."""
    for path, service in services(ctx):
        lb, inherited = effective_lb(ctx, service)
        if service.protocol is not Protocol.TCP or lb is None or lb.hash_on is None or lb.hash_on.header is None:
            continue
        if lb.policy not in HASH_POLICIES:
            continue   # W202 already says hashOn does nothing here
        span, where, origin = _lb_span(ctx, path, inherited)
        if not inherited:
            span, where = ctx.at(*where, "hashOn", "header"), where + ("hashOn", "header")
        yield warning("W207", f"'{service.name}' speaks tcp: hashOn header{origin} has no effect, since tcp_proxy "
                      "sees no headers; connections are spread as if at random", span, where,
                      hint="use hashOn: {sourceIp: true} to keep each caller on one host")


def etcd_prefix(ctx: Context) -> Iterator[Diagnostic]:
    prefix = ctx.mesh.spec.etcd.prefix
    if prefix is None:
        return
    where = ("spec", "etcd", "prefix")
    if not prefix.startswith("/"):
        yield error("E213", f"etcd prefix '{prefix}' must start with '/'", ctx.at(*where), where)
    elif prefix == "/":
        # every key of the cluster would lie under it: other tools' keys would look like meshc's
        yield error("E230", "etcd prefix '/' is the root of the whole keyspace: give the mesh a prefix of its own",
                    ctx.at(*where), where, hint="e.g. /meshc/<metadata.name>, the default")
    elif (prefix.endswith("/") or "//" in prefix):
        yield error("E213", f"etcd prefix '{prefix}' must not end with '/' or contain '//'", ctx.at(*where), where)


def kubernetes_names(ctx: Context) -> Iterator[Diagnostic]:
    """Service names become Kubernetes Service names (DNS-1035) and prefix Deployment names."""
    for path, service in services(ctx):
        if service.endpoints is not None:
            continue
        if not service.name[0].isalpha():
            yield error("E219", f"service name '{service.name}' must start with a letter: it becomes a Kubernetes "
                        "Service name", ctx.at(*path, "name"), path + ("name",))
        if not service.versions and len(service.name) + 1 + len(IMPLICIT_VERSION) > MAX_K8S_NAME:
            yield error("E219", f"service name '{service.name}' is too long: its generated objects need "
                        f"{MAX_K8S_NAME - len(IMPLICIT_VERSION) - 1} characters at most", ctx.at(*path, "name"),
                        path + ("name",))
        for index, version in enumerate(service.versions or ()):
            if len(service.name) + 1 + len(version.name) > MAX_K8S_NAME:
                where = path + ("versions", index, "name")
                yield error("E219", f"'{service.name}-{version.name}' is longer than {MAX_K8S_NAME} characters; "
                            "shorten the service or version name", ctx.at(*where), where)


def generated_names_unique(ctx: Context) -> Iterator[Diagnostic]:
    """Services and versions whose Kubernetes objects would share a name, or take an output file's."""
    owners: dict[tuple[str, str], str] = {}
    for path, service in services(ctx):
        if service.endpoints is not None:
            continue
        if service.name in RESERVED_SERVICE_NAMES:
            yield error("E222", f"service name '{service.name}' is reserved: kubernetes/{service.name}.yaml is "
                        "an output file of its own", ctx.at(*path, "name"), path + ("name",))
        for (kind, name), owner, where in _claimed_names(service, path):
            first = owners.setdefault((kind, name), owner)
            if first != owner:
                yield error("E222", f"{owner} would create the {kind} '{name}', which {first} already creates; "
                            "rename one of them", ctx.at(*where), where)


def _claimed_names(service: Service, path: Path) -> Iterator[tuple[tuple[str, str], str, Path]]:
    """(kind, name), who creates it, and where that is written — for one deployed service."""
    yield ("Service", service.name), f"service '{service.name}'", path + ("name",)
    if not service.versions:
        owner, where = f"service '{service.name}'", path + ("name",)
        yield ("Deployment", object_names.workload(service.name, IMPLICIT_VERSION, True)), owner, where
        yield ("Service", object_names.headless_service(service.name, IMPLICIT_VERSION)), owner, where
        return
    for index, version in enumerate(service.versions):
        owner, where = f"version '{version.name}' of '{service.name}'", path + ("versions", index, "name")
        yield ("Deployment", object_names.workload(service.name, version.name, False)), owner, where
        yield ("Service", object_names.headless_service(service.name, version.name)), owner, where


def analysis_references(ctx: Context) -> Iterator[Diagnostic]:
    entry_points = list(enumerate(ctx.mesh.spec.analysis.entry_points or ()))
    yield from _unknown_entry_points(entry_points, {s.name for s in ctx.mesh.spec.services}, ctx.positions)


def _unknown_entry_points(entry_points: list[tuple[int, str]], names: set[str],
                          positions: Positions) -> Iterator[Diagnostic]:
    for index, name in entry_points:
        if name not in names:
            where = ("spec", "analysis", "entryPoints", index)
            yield error("E220", f"entry point '{name}' is not a service of this mesh", positions.value(where), where)


# --- zero trust ----------------------------------------------------------------------------

def certificate_renewal(ctx: Context) -> Iterator[Diagnostic]:
    certificates = ctx.mesh.spec.security.certificates
    if certificates.renew_before >= certificates.duration:
        where = ("spec", "security", "certificates", "renewBefore")
        yield error("E501", "certificates.renewBefore must be shorter than certificates.duration, or a certificate "
                    "would be renewed as soon as it is issued (cert-manager refuses it)", ctx.at(*where), where)


def external_zero_trust_fields(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is None:
            continue
        for field, value in (("mtls", service.mtls), ("extraCallers", service.extra_callers)):
            if value is not None:
                yield error("E502", f"service '{service.name}' has static endpoints and runs outside the mesh without "
                            f"a sidecar, so {field} has nothing to enforce it", ctx.key(*path, field), path + (field,),
                            hint="for TLS to an external service, use tls: {sni: ...}")


def tls_origination_on_external(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.tls is not None and service.endpoints is None:
            yield error("E503", f"service '{service.name}' is deployed in the mesh: its callers reach it over mTLS "
                        "already; tls (TLS origination) is for external services with static endpoints",
                        ctx.key(*path, "tls"), path + ("tls",))


def tls_origination_needs_a_name(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.tls is None or service.endpoints is None or service.tls.sni is not None:
            continue
        if _is_ip(service.endpoints[0].address):
            yield error("E504", f"service '{service.name}' is reached by IP address, so tls needs sni: the name its "
                        "certificate is issued for", ctx.key(*path, "tls"), path + ("tls",),
                        hint="tls: {sni: api.example.com}")


def extra_callers_outside_the_mesh(ctx: Context) -> Iterator[Diagnostic]:
    namespace = ctx.mesh.spec.namespace or ctx.mesh.metadata.name
    names = {s.name for s in ctx.mesh.spec.services}
    for path, service in services(ctx):
        for index, caller in enumerate(service.extra_callers or ()):
            if caller.namespace == namespace and caller.service_account in names:
                where = path + ("extraCallers", index)
                yield error("E505", f"'{caller.service_account}' is a service of this mesh: list '{service.name}' in "
                            f"its upstreams instead, so the call is part of the reviewed call graph",
                            ctx.at(*where), where)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def external_https_without_tls(ctx: Context) -> Iterator[Diagnostic]:
    for path, service in services(ctx):
        if service.endpoints is None or service.tls is not None:
            continue
        if any(e.port == HTTPS_PORT for e in service.endpoints) and service.protocol is not Protocol.TCP:
            yield warning("W502", f"service '{service.name}' listens on port {HTTPS_PORT} but has no tls: callers' "
                          "sidecars would speak plaintext HTTP to it", ctx.at(*path, "name"), path + ("name",),
                          hint="add tls: {sni: <its host name>}, or set protocol: tcp if the app speaks TLS itself")


HTTPS_PORT = 443


Check = Callable[[Context], Iterable[Diagnostic]]

CHECKS: tuple[Check, ...] = (
    duplicate_services,
    unknown_upstreams,
    duplicate_versions,
    duplicate_local_ports,
    local_port_clashes,
    proxy_port_clashes,
    version_weights,
    weighted_needs_weights,
    hash_lb_needs_key,
    hash_key_complete,
    endpoint_weights_ignored,
    static_endpoints_exclusive,
    duplicate_endpoints,
    external_without_upstreams,
    deployed_needs_image,
    retry_on_known,
    fail_fast_without_retries,
    backoff_order,
    retry_settings_without_attempts,
    health_check_path,
    health_check_timing,
    tcp_route_policies,
    tcp_hash_header,
    etcd_prefix,
    kubernetes_names,
    generated_names_unique,
    analysis_references,
    certificate_renewal,
    external_zero_trust_fields,
    tls_origination_on_external,
    tls_origination_needs_a_name,
    extra_callers_outside_the_mesh,
    external_https_without_tls,
)


def check_semantics(mesh: Mesh, positions: Positions) -> list[Diagnostic]:
    ctx = Context(mesh, positions)
    return [diagnostic for check in CHECKS for diagnostic in check(ctx)]


def check_references_raw(data: Any, positions: Positions) -> list[Diagnostic]:
    """The reference checks (E201, E202, E220) on data that failed structural validation, so that
    a spec with a bad port and a misspelt upstream hears about both in one run. Whatever is not
    shaped as expected is skipped: the structural diagnostics already speak about it."""
    raw_services = [(i, s) for i, s in _items(_field(data, "spec", "services")) if isinstance(_field(s, "name"), str)]
    named: list[tuple[Path, str]] = [(("spec", "services", i), s["name"]) for i, s in raw_services]
    names = {name for _, name in named}
    calls: list[tuple[Path, str, str]] = [(("spec", "services", i, "upstreams", j), s["name"], upstream["service"])
             for i, s in raw_services for j, upstream in _items(_field(s, "upstreams"))
             if isinstance(_field(upstream, "service"), str)]
    entry_points = [(i, name) for i, name in _items(_field(data, "spec", "analysis", "entryPoints"))
                    if isinstance(name, str)]
    return [*_duplicate_names(named, positions), *_unknown_callees(calls, names, positions),
            *_unknown_entry_points(entry_points, names, positions)]


def _field(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []
