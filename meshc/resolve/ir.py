"""The intermediate model: the mesh with every default and inheritance applied.

Immutable, target-agnostic (nothing here knows Envoy, Kubernetes or etcd), sorted where order has
no meaning, and every node keeps the span of mesh.yaml it came from. Durations are milliseconds.

Spans take no part in equality: two nodes are equal when they mean the same, wherever the spec
wrote them (an edit above a service moves its lines, not its output). Incremental builds rely on
this to tell which services changed.
"""

# Annotations are objects, not text (no `from __future__ import annotations`): `dataclass` reads
# each annotation given as text with a regular expression, twice (a ClassVar? an InitVar?), when
# it defines the class: a sixth of defining the IR, at every start. The few references to classes
# defined further down are quoted.

from dataclasses import dataclass, field

from meshc.diagnostics import Span
# Re-exported: emitters speak of ir.LbPolicy, ir.Protocol, ir.AccessLog.
from meshc.vocabulary import AccessLog as AccessLog
from meshc.vocabulary import LbPolicy as LbPolicy
from meshc.vocabulary import MtlsMode as MtlsMode
from meshc.vocabulary import Protocol as Protocol


@dataclass(frozen=True, slots=True)
class HashKey:
    """What a hash load balancer hashes on: a request header, or the caller's address."""

    header: str | None
    source_ip: bool
    cookie: "CookieKey | None" = None
    query_parameter: str | None = None


@dataclass(frozen=True, slots=True)
class CookieKey:
    """Hash on a cookie; with a ttl the proxy sets it on a first answer, so later requests stick."""

    name: str
    ttl_ms: int | None
    path: str | None


@dataclass(frozen=True, slots=True)
class LoadBalancing:
    """How a caller spreads requests over a service's hosts."""

    policy: LbPolicy
    hash_key: HashKey | None
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait between retries, growing from base_interval_ms up to max_interval_ms."""

    base_interval_ms: int
    max_interval_ms: int


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a failed request is tried again, per try and in all."""

    attempts: int                 # retries after the first try; 0 means "try once"
    per_try_timeout_ms: int | None
    retry_on: tuple[str, ...]
    backoff: Backoff | None
    span: Span = field(compare=False)
    retriable_status_codes: tuple[int, ...] = ()   # sorted; retried under retriable-status-codes
    retriable_headers: tuple[str, ...] = ()        # response headers that mean "retry"


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How many retries may be in flight at once, as a share of active requests."""

    percent: float | None           # of active requests that may be retries; None: the proxy's default
    min_concurrency: int | None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """When a host that keeps failing is ejected from the load balancing, and for how long."""

    consecutive_5xx: int
    consecutive_gateway_failure: int | None
    interval_ms: int
    base_ejection_time_ms: int
    max_ejection_percent: int
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Limits on the connections and requests a caller keeps open to a service."""

    max_connections: int
    max_pending_requests: int
    max_requests: int
    max_retries: int
    span: Span = field(compare=False)
    retry_budget: RetryBudget | None = None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The active health check a caller runs against each host of a service."""

    path: str | None              # the HTTP GET path; None for grpc (gRPC Health) and tcp (connect)
    interval_ms: int
    timeout_ms: int
    healthy_threshold: int
    unhealthy_threshold: int
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Resources:
    """Kubernetes-style quantities; None where neither the spec nor a default sets one."""

    cpu_request: str | None
    memory_request: str | None
    cpu_limit: str | None
    memory_limit: str | None
    storage_request: str | None = None   # ephemeral-storage: no default, set only where the spec sets it
    storage_limit: str | None = None


# --- workloads -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EnvSource:
    """A variable whose value the platform reads: a Secret's or ConfigMap's key, or a pod field."""

    kind: str                     # "secretKeyRef" | "configMapKeyRef" | "fieldRef"
    name: str | None              # the Secret or ConfigMap; None for fieldRef
    key: str                      # the key, or the field path of a fieldRef
    optional: bool | None


@dataclass(frozen=True, slots=True)
class EnvVar:
    """An environment variable of a container: a literal value, or a source to read it from."""

    name: str
    value: str | None             # a literal value, or
    source: EnvSource | None      # where the value comes from
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Volume:
    """A volume mounted into a service's app container."""

    name: str
    mount_path: str
    read_only: bool
    kind: str                     # "emptyDir" | "configMap" | "secret" | "persistentVolumeClaim"
    source: str | None            # the ConfigMap, Secret or claim; None for emptyDir
    items: tuple[tuple[str, str], ...]  # (key, path) for configMap/secret; empty: every key
    optional: bool | None
    size_limit: str | None        # emptyDir
    medium: str | None            # emptyDir
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class AppSecurity:
    """The app's identity and file system (restricted Pod Security is checked before this)."""

    run_as_user: int = 65532      # the conventional "nonroot" user of distroless images
    run_as_group: int = 65532
    fs_group: int | None = None
    read_only_root_filesystem: bool = True
    added_capabilities: tuple[str, ...] = ()   # NET_BIND_SERVICE at most


@dataclass(frozen=True, slots=True)
class InitContainer:
    """A container that runs to completion before the app container starts."""

    name: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: tuple[EnvVar, ...]       # sorted by name
    resources: Resources
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe as the spec states it; `port` None means the app's port."""

    handler: str                  # "httpGet" | "tcpSocket" | "grpc" | "exec"
    port: int | None
    path: str | None
    scheme: str | None
    headers: tuple[tuple[str, str], ...]
    grpc_service: str | None
    command: tuple[str, ...]
    initial_delay_s: int | None
    period_s: int | None
    timeout_s: int | None
    success_threshold: int | None
    failure_threshold: int | None
    span: Span = field(compare=False)


PROBE_OFF = "off"
# A probe the spec sets, PROBE_OFF (none at all), or None (meshc's default for it)
ProbeChoice = Probe | str | None


@dataclass(frozen=True, slots=True)
class Probes:
    """The Kubernetes probes of an app container (None: not probed)."""

    liveness: ProbeChoice = None
    readiness: ProbeChoice = None
    startup: ProbeChoice = None


@dataclass(frozen=True, slots=True)
class Autoscaling:
    """A HorizontalPodAutoscaler's range of replicas and utilization targets."""

    min_replicas: int
    max_replicas: int
    cpu_utilization: int | None
    memory_utilization: int | None
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class DisruptionBudget:
    """A PodDisruptionBudget: how many pods must stay, or may go, during voluntary disruptions."""

    min_available: int | str | None
    max_unavailable: int | str | None
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Toleration:
    """A Kubernetes toleration of a node taint."""

    key: str | None
    operator: str | None
    value: str | None
    effect: str | None
    seconds: int | None


@dataclass(frozen=True, slots=True)
class TopologySpread:
    """A Kubernetes topology spread constraint."""

    max_skew: int
    topology_key: str
    when_unsatisfiable: str
    min_domains: int | None


@dataclass(frozen=True, slots=True)
class PodSettings:
    """Pod-level Kubernetes settings of a service's workloads."""

    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    affinity_json: str | None = None      # Kubernetes' Affinity as canonical JSON (kept as given)
    topology_spread: tuple[TopologySpread, ...] = ()
    priority_class_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    termination_grace_period_s: int | None = None


# The workload settings of a service that sets none: one shared object each (emitters may
# recognise them by identity to skip work; equality still holds for any equal value).
DEFAULT_APP_SECURITY = AppSecurity()
NO_PROBES = Probes()
NO_POD_SETTINGS = PodSettings()


@dataclass(frozen=True, slots=True)
class Version:
    """One deployed version of a service: its workload and its share of the requests."""

    name: str
    implicit: bool                # the service declared no versions: this is its only one
    image: str
    replicas: int
    weight: int                   # percent of requests; 100 for an implicit version
    resources: Resources
    span: Span = field(compare=False)
    # workloads: the version's app container, its own settings over the service's
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[EnvVar, ...] = ()  # upstream addresses, service env, version env; sorted by name
    autoscaling: Autoscaling | None = None          # replicas are the autoscaler's when set
    disruption_budget: DisruptionBudget | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A static address a service is reached at (a service meshc does not deploy)."""

    address: str
    port: int
    weight: int | None
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Destination:
    """The called service's policies as one caller's copy of the cluster applies them."""

    load_balancing: LoadBalancing
    connect_timeout_ms: int
    outlier_detection: OutlierDetection | None
    circuit_breaker: CircuitBreaker | None
    health_check: HealthCheck | None


@dataclass(frozen=True, slots=True)
class Upstream:
    """One edge of the call graph: the caller's route to a callee, with the caller's policies."""

    service: str
    local_port: int
    protocol: Protocol            # the callee's protocol
    timeout_ms: int
    retries: RetryPolicy | None   # None under fail_fast or when attempts is 0
    fail_fast: bool
    destination: Destination
    span: Span = field(compare=False)
    routes: "tuple[Route, ...]" = ()   # the callee's routes this caller applies, timeout/retries resolved
    host_rewrite: str | None = None   # the Host callers send to an external service with TLS (its name)


@dataclass(frozen=True, slots=True)
class Identity:
    """A workload identity: the SPIFFE ID `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`."""

    namespace: str
    service_account: str
    spiffe_id: str


@dataclass(frozen=True, slots=True)
class Caller:
    """One identity allowed to call a service: a mesh service (`service` set) or an extra caller."""

    identity: Identity
    service: str | None           # the calling mesh service; None for spec `extraCallers` and gateways
    span: Span = field(compare=False)
    gateway: str | None = None    # the calling gateway (spec.gateways[].name)


@dataclass(frozen=True, slots=True)
class ExternalTls:
    """TLS origination from callers' sidecars to an external service."""

    sni: str
    ca_bundle: str | None         # a CA file; None for the sidecar image's system bundle
    host_rewrite: str | None      # the Host/:authority callers send, or None to keep the app's
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Service:
    """A service of the mesh, with every default and inheritance applied."""

    name: str
    port: int | None              # None: a client-only service (calls out, takes no calls)
    protocol: Protocol
    deployed: bool                # False for a service reached through static endpoints
    versions: tuple[Version, ...]  # sorted by name; empty for static-endpoint services
    endpoints: tuple[Endpoint, ...]  # sorted by (address, port)
    load_balancing: LoadBalancing
    connect_timeout_ms: int
    outlier_detection: OutlierDetection | None
    circuit_breaker: CircuitBreaker | None
    health_check: HealthCheck | None
    upstreams: tuple[Upstream, ...]  # sorted by service name
    env: tuple[tuple[str, str], ...]  # the literal values of the service's env, sorted by name
    span: Span = field(compare=False)
    # workloads
    service_port: int | None = None   # the ClusterIP Service's port; None without `port`
    volumes: tuple[Volume, ...] = ()  # sorted by name
    security: AppSecurity = DEFAULT_APP_SECURITY
    init_containers: tuple[InitContainer, ...] = ()  # in the spec's order: they run one after another
    probes: Probes = NO_PROBES
    pod: PodSettings = NO_POD_SETTINGS
    routes: "tuple[Route, ...]" = ()   # in spec order: the first match wins
    rate_limit: "RateLimit | None" = None
    # Zero trust. mtls: this service's inbound mode (its own override, else the mesh's).
    identity: Identity | None = None
    mtls: MtlsMode = MtlsMode.OFF
    # Who may call it: declared callers (from `upstreams`) and `extraCallers`, sorted by SPIFFE ID.
    # The one place authorization is decided; every emitter reads it from here.
    allowed_callers: tuple[Caller, ...] = ()
    external_tls: ExternalTls | None = None


@dataclass(frozen=True, slots=True)
class Certificates:
    """Where workload certificates come from, and how long they live."""

    issuer_kind: str
    issuer_name: str
    emit_issuer: bool             # the Issuer is meshc's own (no issuerRef in the spec)
    duration_ms: int
    renew_before_ms: int


@dataclass(frozen=True, slots=True)
class Security:
    """The mesh's mTLS, trust domain, certificates and network policies."""

    mtls: MtlsMode                # the mesh-wide mode; services may override it
    trust_domain: str
    certificates: Certificates
    network_policies: bool
    monitoring_namespace: str | None
    # Whether any service of the mesh is not `off`: then every deployed service has an identity
    # and a certificate (a caller needs one to call an mTLS service, whatever its own mode).
    enabled: bool
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Proxy:
    """The Envoy sidecar every deployed service runs."""

    image: str
    admin_port: int
    inbound_port: int
    stats_port: int
    access_log: AccessLog
    resources: Resources
    native_sidecar: bool = True   # Envoy as an init container with restartPolicy Always (Kubernetes 1.29+)
    drain_ms: int = 5000          # how long a stopping pod keeps serving while callers let go of it


@dataclass(frozen=True, slots=True)
class Analysis:
    """Settings of the call-graph analysis."""

    max_retry_amplification: int
    entry_points: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Mesh:
    """The whole mesh: what every emitter reads."""

    name: str
    namespace: str
    etcd_prefix: str
    proxy: Proxy
    services: tuple[Service, ...]  # sorted by name
    analysis: Analysis
    span: Span = field(compare=False)
    gateways: "tuple[Gateway, ...]" = ()   # sorted by name
    security: Security | None = None   # None only for meshes built by hand in tests

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    @property
    def deployed_services(self) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.deployed)


# --- request routing, faults, rate limits and gateways ------------------------------------

@dataclass(frozen=True, slots=True)
class StringMatch:
    """How a string (a header's or a query parameter's value) is matched."""

    kind: str                     # exact | prefix | suffix | regex | present | absent
    value: str | None             # None for present / absent


@dataclass(frozen=True, slots=True)
class NamedMatch:
    """A condition on one header or query parameter."""

    name: str
    match: StringMatch


@dataclass(frozen=True, slots=True)
class PathMatch:
    """How a request's path is matched."""

    kind: str                     # prefix | exact | regex
    value: str


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """What a request must match for a route to take it: all of its conditions."""

    path: PathMatch | None
    headers: tuple[NamedMatch, ...]   # in spec order
    methods: tuple[str, ...]          # empty: any method
    query: tuple[NamedMatch, ...]
    callers: tuple[str, ...] | None   # None: every caller


@dataclass(frozen=True, slots=True)
class VersionShare:
    """A version's percent of a route's requests."""

    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class Fault:
    """Faults injected into a route's requests: delays and aborts."""

    delay_ms: int | None
    delay_percent: float
    abort_status: int | None
    abort_grpc_status: int | None
    abort_percent: float
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Mirror:
    """A copy of a share of a route's requests, sent to another service; its answers are dropped."""

    service: str
    version: str | None           # None: the service's only version, or its static endpoints
    percent: float
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class HeaderChanges:
    """Headers set and removed on a request or a response."""

    set: tuple[tuple[str, str], ...]   # in spec order
    remove: tuple[str, ...]


NO_HEADER_CHANGES = HeaderChanges((), ())


@dataclass(frozen=True, slots=True)
class Route:
    """A route of a service: the requests it matches and what happens to them."""

    name: str | None
    index: int                    # position among the service's routes
    match: RouteMatch
    versions: tuple[VersionShare, ...]   # empty: the service's own version weights
    timeout_ms: int | None        # None in a service's declaration; resolved per caller in Upstream.routes
    retries: RetryPolicy | None
    retries_set: bool             # the route sets retries of its own
    fault: Fault | None
    mirror: Mirror | None
    prefix_rewrite: str | None
    request_headers: HeaderChanges
    response_headers: HeaderChanges
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket limiting the requests each of a service's pods takes."""

    requests: int                 # tokens added every per_ms
    per_ms: int
    burst: int                    # the bucket's size
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class GatewayListener:
    """A port a gateway listens on, for some hosts, over TLS or not."""

    port: int
    hosts: tuple[str, ...]
    tls_secret: str | None        # a kubernetes.io/tls Secret
    redirect_to_https: bool
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """A gateway's route from a host and path to a service of the mesh."""

    host: str | None              # None: every host of the gateway's listeners
    path: PathMatch | None
    service: str
    timeout_ms: int
    retries: RetryPolicy | None
    prefix_rewrite: str | None
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Gateway:
    """An ingress gateway: an Envoy that takes requests from outside the mesh."""

    name: str
    replicas: int
    listeners: tuple[GatewayListener, ...]   # in spec order
    routes: tuple[GatewayRoute, ...]         # in spec order: the first match wins
    span: Span = field(compare=False)
    identity: Identity | None = None         # its workload identity, whenever the mesh uses mTLS

    @property
    def services(self) -> tuple[str, ...]:
        """The services it routes to, sorted: its callees."""
        return tuple(sorted({r.service for r in self.routes}))
