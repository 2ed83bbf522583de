"""The mesh.yaml spec, `meshc.dev/v1alpha1`, as pydantic models: structure, types and ranges.

Field names follow the YAML (camelCase aliases); every model forbids unknown fields. Defaults that
depend on other parts of the spec (inheritance from `spec.defaults`) are NOT applied here: the
resolve stage applies them, in one place, so that "unset" stays visible to the semantic checks.
"""

# Annotations are text (`from __future__ import annotations`): the light models a `meshc` command
# declares (meshc.validate.light) never evaluate them, which was three quarters of declaring them.
# pydantic evaluates each from its text when it defines a model (tests, `meshc schema`, a run whose
# compiled validator is not cached yet), its code compiled once across runs (meshc.cache).
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

# pydantic looks for plugins by scanning the metadata of every installed distribution when the
# first model is built (tens of ms in a large environment, on every `meshc validate`); meshc uses
# none, and a plugin someone installed for another program has no business in its validation.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from meshc.validate import light

# Declared with pydantic, unless this process is a `meshc validate` or `meshc build` whose compiled
# validator is in the cache: then with light stand-ins of the same names (meshc.validate.light).
if TYPE_CHECKING or not light.active():
    from pydantic import (
        AfterValidator,
        Discriminator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        GetCoreSchemaHandler,
        GetJsonSchemaHandler,
        StrictBool,
        StrictInt,
        Tag,
        WithJsonSchema,
    )
    from pydantic.alias_generators import to_camel
    from pydantic_core import CoreSchema, PydanticCustomError, core_schema
else:
    from meshc.validate.light import (
        AfterValidator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        CoreSchema,
        Discriminator,
        Field,
        GetCoreSchemaHandler,
        GetJsonSchemaHandler,
        PydanticCustomError,
        StrictBool,
        StrictInt,
        Tag,
        WithJsonSchema,
        core_schema,
        to_camel,
    )

from meshc.defaults import PROXY_DRAIN_MS, SIDECAR_IMAGE
from meshc.durations import DURATION_PATTERN, format_duration, parse_duration
from meshc.quantities import NON_NEGATIVE_PATTERN, canonical_quantity, parse_quantity
from meshc.vocabulary import AccessLog, FailurePolicy, LbPolicy, MtlsMode, Protocol

API_VERSION = "meshc.dev/v1alpha1"
KIND = "Mesh"

# Patterns given to pydantic (`Field(pattern=...)`) run on Rust's regex engine and in JSON Schema,
# where `$` ends the text. Patterns matched in Python use fullmatch: there `$` also matches before
# a trailing newline, and "web\n" would pass for a DNS label.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_PATTERN = f"^{_DNS_LABEL.pattern}$"
_ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HEADER_NAME_PATTERN = r"^[a-zA-Z0-9!#$%&'*+.^_`|~-]+$"          # RFC 9110 token (Envoy: HTTP_HEADER_NAME)
_HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"           # Envoy's HTTP_HEADER_VALUE, strict
_HTTP_PATH_PATTERN = r"^/[!-~]*$"                                 # printable ASCII, no space: percent-encode the rest
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise PydanticCustomError(
            "dns_label",
            "{value} is not a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters",
            {"value": repr(value)},
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema({"type": "string", "pattern": _DNS_LABEL_PATTERN, "maxLength": 63}),
]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


# --- strings that reach generated files --------------------------------------------------------
# Every spec string is already free of control characters, C1, U+2028/2029 and noncharacters
# (the loader refuses them, E111; meshc.text). These types add what Envoy and Kubernetes require of
# particular strings; new fields that reach output should use one of them.

Token = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\s]+$")]   # one word, no whitespace
HeaderName = Annotated[str, Field(min_length=1, max_length=256, pattern=_HEADER_NAME_PATTERN)]
HeaderValue = Annotated[str, Field(max_length=8192, pattern=_HEADER_VALUE_PATTERN)]
HttpPath = Annotated[str, Field(min_length=1, max_length=1024, pattern=_HTTP_PATH_PATTERN)]


def _host_name(value: str) -> str:
    """A DNS name as RFC 1123 allows it: dot-separated labels of letters, digits and '-' (not at
    either end), 63 characters a label, 253 in all, and a last label that is not all digits (so a
    mistyped IPv4 address is not taken for a name)."""
    labels = value.split(".")
    if (len(value) > 253 or not all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()):
        raise PydanticCustomError(
            "address", "{value} is not a DNS name: dot-separated labels of letters, digits and '-', "
            "each 1-63 characters, not starting or ending with '-', the last not all digits", {"value": repr(value)})
    return value


def _endpoint_address(value: str) -> str:
    """An IPv4 address, an IPv6 address, or a DNS name; what Envoy can connect to or resolve."""
    import ipaddress   # only for a spec that names endpoint addresses

    parse: Callable[[str], object]
    if ":" in value:
        kind, parse = "IPv6", ipaddress.IPv6Address
    elif re.fullmatch(r"[0-9.]+", value):
        kind, parse = "IPv4", ipaddress.IPv4Address
    else:
        return _host_name(value)
    try:
        address = parse(value)
    except ValueError as exc:
        raise PydanticCustomError("address", "{value} is not an {kind} address: {reason}",
                                  {"value": repr(value), "kind": kind, "reason": _lower_first(str(exc))}) from None
    if getattr(address, "scope_id", None):
        # A zone names an interface of one host (fe80::1%eth0); a NetworkPolicy's ipBlock takes none.
        raise PydanticCustomError("address", "{value} has a zone (%...), which names an interface of one host: "
                                  "Kubernetes refuses it in the NetworkPolicy that lets callers reach the endpoint",
                                  {"value": repr(value)})
    return value


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


HostName = Annotated[str, AfterValidator(_host_name),
                     WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 253})]
EndpointAddress = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_endpoint_address),
                            WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 253,
                                            "pattern": r"^[A-Za-z0-9.:-]+$"})]


@dataclass(frozen=True)
class DurationBounds:
    """Annotated metadata: the field is a duration string, validated to milliseconds in bounds."""

    min_ms: int = 1
    max_ms: int = 24 * 3_600_000
    zero_means: str | None = None   # what Envoy would make of 0, said when a user writes it

    def parse(self, value: object) -> int:
        if not isinstance(value, str):
            raise PydanticCustomError(
                "duration", "a duration must be a string such as 250ms, 2s or 1m, not {value}",
                {"value": repr(value)},
            )
        try:
            millis = parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", str(exc)) from None
        if millis == 0 and self.min_ms > 0 and self.zero_means:
            raise PydanticCustomError(
                "duration_range", "{value} is out of range: must be between {low} and {high} (Envoy would read 0 "
                "as {zero_means}; meshc keeps every wait bounded, so that timeout budgets can be checked)",
                {"value": value, "low": format_duration(self.min_ms), "high": format_duration(self.max_ms),
                 "zero_means": self.zero_means},
            )
        if not self.min_ms <= millis <= self.max_ms:
            raise PydanticCustomError(
                "duration_range", "{value} is out of range: must be between {low} and {high}",
                {"value": value, "low": format_duration(self.min_ms), "high": format_duration(self.max_ms)},
            )
        return millis

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.parse)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "pattern": DURATION_PATTERN}


Timeout = Annotated[int, DurationBounds(1, 3_600_000, zero_means="'no timeout'")]
Interval = Annotated[int, DurationBounds(1, 3_600_000)]
BackoffBase = Annotated[int, DurationBounds(1, 60_000)]
BackoffMax = Annotated[int, DurationBounds(1, 600_000)]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True,
        strict=False, use_enum_values=False,
        # Built on first use, and Mesh's validator comes compiled from a cache (meshc.validate.compiled):
        # generating the schemas of every model at import was most of a short `meshc validate`.
        defer_build=True,
    )


# --- load balancing -------------------------------------------------------------------------

class HashOn(Model):
    """What a hash load balancer hashes: one request header, or the caller's address."""

    header: HeaderName | None = None
    source_ip: StrictBool | None = Field(default=None, alias="sourceIp")
    cookie: HashCookie | None = None
    query_parameter: Annotated[str, Field(min_length=1, max_length=256)] | None = None


def _policy_name_to_mapping(value: object) -> object:
    # `loadBalancer: maglev` is shorthand for `loadBalancer: {policy: maglev}`.
    return {"policy": value} if isinstance(value, str) else value


class LoadBalancer(Model):
    policy: LbPolicy
    hash_on: HashOn | None = None


LoadBalancerField = Annotated[
    LoadBalancer,
    BeforeValidator(_policy_name_to_mapping, json_schema_input_type=LbPolicy | LoadBalancer),
]


class HashCookie(Model):
    """Hash on a cookie; with a ttl, Envoy sets the cookie when the request has none (stickiness)."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    ttl: Annotated[int, DurationBounds(0, 365 * 24 * 3_600_000)] | None = None
    path: Annotated[str, Field(pattern=r"^/[^\s;]*$", max_length=1024)] | None = None


# --- failure handling -----------------------------------------------------------------------

class Backoff(Model):
    base_interval: BackoffBase
    max_interval: BackoffMax | None = None


class Retries(Model):
    attempts: Annotated[StrictInt, Field(ge=0, le=10)] | None = None
    per_try_timeout: Timeout | None = None
    retry_on: Annotated[list[str | StrictInt], Field(min_length=1)] | None = None
    backoff: Backoff | None = None
    retriable_headers: Annotated[list[str], Field(min_length=1)] | None = None


class OutlierDetection(Model):
    consecutive_5xx: Annotated[StrictInt, Field(ge=1, le=1000)] | None = Field(default=None, alias="consecutive5xx")
    consecutive_gateway_failure: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    interval: Interval | None = None
    base_ejection_time: Interval | None = None
    max_ejection_percent: Annotated[StrictInt, Field(ge=0, le=100)] | None = None


class CircuitBreaker(Model):
    max_connections: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    max_pending_requests: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    max_requests: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    max_retries: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    retry_budget: RetryBudget | None = None


class RetryBudget(Model):
    """Retries may be at most `percent` of the active requests (never fewer than minConcurrency)."""

    percent: Annotated[float, Field(ge=0, le=100)] | None = None
    min_concurrency: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None


class HealthCheck(Model):
    path: HttpPath | None = None  # http/http2 only
    interval: Interval = Field(default=5000, json_schema_extra={"default": "5s"})
    timeout: Timeout = Field(default=1000, json_schema_extra={"default": "1s"})
    healthy_threshold: Annotated[StrictInt, Field(ge=1, le=100)] = 2
    unhealthy_threshold: Annotated[StrictInt, Field(ge=1, le=100)] = 3


# --- workloads ------------------------------------------------------------------------------

def _number_as_quantity(value: object) -> object:
    # Kubernetes takes `cpu: 2`, `cpu: 0.5`, `memory: 1e9` unquoted (YAML reads numbers). Their
    # spelling is gone, and repr() would write 1e9 as `1000000000.0`: written as the API server
    # writes the value back instead (`1G`), the manifest and the live object read the same.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    text = repr(value)
    if text.startswith("-"):
        return text                 # refused by _quantity, as written
    try:
        return canonical_quantity(parse_quantity(text))
    except ValueError:              # inf, nan: _quantity says why
        return text


def _quantity(value: str) -> str:
    """A quantity as Kubernetes reads it (meshc.quantities), without a minus sign: the API server
    refuses negative requests, limits and size limits (and `-0` is no way to write 0)."""
    try:
        parse_quantity(value)
    except ValueError:
        raise PydanticCustomError(
            "quantity", "{value} is not a Kubernetes quantity: a number with an optional suffix or exponent, "
            "such as 250m, 0.5, 2, 1e9, 128Mi or 1.5G (suffixes n u m k M G T P E, Ki Mi Gi Ti Pi Ei)",
            {"value": repr(value)}) from None
    if value.startswith("-"):
        raise PydanticCustomError(
            "quantity", "{value} is negative: Kubernetes refuses negative requests, limits and size limits",
            {"value": repr(value)})
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_number_as_quantity),
    AfterValidator(_quantity),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": NON_NEGATIVE_PATTERN}, {"type": "number", "minimum": 0}]}),
]


class ResourceList(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None
    ephemeral_storage: Quantity | None = Field(default=None, alias="ephemeral-storage")   # Kubernetes' name


class Resources(Model):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


Image = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\s]+$")]   # a Token of image length
Replicas = Annotated[StrictInt, Field(ge=0, le=10_000)]


# --- workloads: what real applications need (DESIGN 11) -----------------------------------------
# The shapes follow Kubernetes (camelCase, same meaning) so that manifests translate one to one.

# Discriminated unions (a scalar or a mapping) name their branch in error locations; the
# structural stage drops these tags from data paths.
SCALAR_TAG = "<scalar>"
MAPPING_TAG = "<mapping>"
PERCENT_TAG = "<percent>"
UNION_TAGS = frozenset({SCALAR_TAG, MAPPING_TAG, PERCENT_TAG})
OFF = "off"

_DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_ABSOLUTE_PATH_PATTERN = r"^/[^\s:]*$"
_LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
_CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN_PATTERN)]
EnvName = Annotated[str, Field(pattern=_ENV_NAME_PATTERN, max_length=256)]
Command = Annotated[list[Annotated[str, Field(max_length=4096)]], Field(min_length=1)]
AbsolutePath = Annotated[str, Field(pattern=_ABSOLUTE_PATH_PATTERN, max_length=1024)]
LabelMap = dict[Annotated[str, Field(pattern=_LABEL_KEY_PATTERN, max_length=317)],
                Annotated[str, Field(pattern=_LABEL_VALUE_PATTERN, max_length=63)]]
Seconds = Annotated[StrictInt, Field(ge=0, le=86_400)]
Threshold = Annotated[StrictInt, Field(ge=1, le=1000)]


def _scalar_or_mapping(value: object) -> str:
    return MAPPING_TAG if isinstance(value, dict) else SCALAR_TAG


class KeySelector(Model):
    """One key of a Secret or ConfigMap."""

    name: ObjectName
    key: Annotated[str, Field(pattern=_CONFIG_KEY_PATTERN, max_length=253)]
    optional: StrictBool | None = None


class FieldSelector(Model):
    field_path: Annotated[str, Field(min_length=1, max_length=256)]


class EnvSource(Model):
    """Where a variable's value comes from, instead of the spec: exactly one of the three."""

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: FieldSelector | None = None


# `scalar | mapping` unions are validated as the branch the value's shape picks (one error, not two)
EnvValue = Annotated[
    Annotated[str, Field(max_length=65_536), Tag(SCALAR_TAG)] | Annotated[EnvSource, Tag(MAPPING_TAG)],
    Discriminator(_scalar_or_mapping),
]
EnvMap = dict[EnvName, EnvValue]


class EmptyDirSource(Model):
    size_limit: Quantity | None = None
    medium: Literal["Memory"] | None = None


class KeyToPath(Model):
    key: Annotated[str, Field(pattern=_CONFIG_KEY_PATTERN, max_length=253)]
    path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^/\s][^\s]*$")]


class ConfigSource(Model):
    """A ConfigMap or Secret mounted as files (all keys, or the listed ones)."""

    name: ObjectName
    items: list[KeyToPath] | None = None
    optional: StrictBool | None = None


class ClaimSource(Model):
    claim_name: ObjectName
    read_only: StrictBool | None = None


class Volume(Model):
    """A volume and where the app container mounts it: exactly one source."""

    name: Name
    mount_path: AbsolutePath
    read_only: StrictBool | None = None
    empty_dir: EmptyDirSource | None = None
    config_map: ConfigSource | None = None
    secret: ConfigSource | None = None
    persistent_volume_claim: ClaimSource | None = None


class Capabilities(Model):
    add: list[Annotated[str, Field(pattern=r"^[A-Z_]+$", max_length=64)]] | None = None
    drop: list[Annotated[str, Field(pattern=r"^[A-Z_]+$", max_length=64)]] | None = None


class SecurityContext(Model):
    """The app's identity and file system; never weaker than Pod Security `restricted` (checked)."""

    run_as_user: Annotated[StrictInt, Field(ge=0, le=2_147_483_647)] | None = None
    run_as_group: Annotated[StrictInt, Field(ge=0, le=2_147_483_647)] | None = None
    fs_group: Annotated[StrictInt, Field(ge=0, le=2_147_483_647)] | None = None
    run_as_non_root: StrictBool | None = None
    read_only_root_filesystem: StrictBool | None = None
    allow_privilege_escalation: StrictBool | None = None
    privileged: StrictBool | None = None
    capabilities: Capabilities | None = None


class InitContainer(Model):
    """Runs to completion before the app starts, hardened like the app, with the app's volumes."""

    name: Name
    image: Image
    command: Command | None = None
    args: Command | None = None
    env: EnvMap | None = None
    resources: Resources | None = None


class HttpGetAction(Model):
    path: HttpPath = "/"
    port: Port | None = None      # default: the app's port
    scheme: Literal["HTTP", "HTTPS"] | None = None
    headers: dict[HeaderName, HeaderValue] | None = None


class PortAction(Model):
    port: Port | None = None      # default: the app's port


class GrpcAction(Model):
    port: Port | None = None      # default: the app's port
    service: Annotated[str, Field(max_length=256)] | None = None


class ExecAction(Model):
    command: Command


class Probe(Model):
    """A Kubernetes probe: one handler, and its timing."""

    http_get: HttpGetAction | None = None
    tcp_socket: PortAction | None = None
    grpc: GrpcAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: Seconds | None = None
    period_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] | None = None
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] | None = None
    success_threshold: Threshold | None = None
    failure_threshold: Threshold | None = None


ProbeField = Annotated[
    Annotated[Literal["off"], Tag(SCALAR_TAG)] | Annotated[Probe, Tag(MAPPING_TAG)],
    Discriminator(_scalar_or_mapping),
]


class Probes(Model):
    liveness: ProbeField | None = None
    readiness: ProbeField | None = None
    startup: ProbeField | None = None


class Autoscaling(Model):
    """A HorizontalPodAutoscaler per version; the Deployment's replicas are then the autoscaler's."""

    min_replicas: Annotated[StrictInt, Field(ge=1, le=10_000)] = 1
    max_replicas: Annotated[StrictInt, Field(ge=1, le=10_000)]
    target_cpu_utilization: Annotated[StrictInt, Field(ge=1, le=1000)] | None = Field(
        default=None, alias="targetCPUUtilization")
    target_memory_utilization: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None


def _percent_or_scalar(value: object) -> str:
    return PERCENT_TAG if isinstance(value, str) else SCALAR_TAG


IntOrPercent = Annotated[
    Annotated[Annotated[StrictInt, Field(ge=0, le=10_000)], Tag(SCALAR_TAG)]
    | Annotated[Annotated[str, Field(pattern=r"^(100|[1-9]?[0-9])%$")], Tag(PERCENT_TAG)],
    Discriminator(_percent_or_scalar),
]


class DisruptionBudget(Model):
    """A PodDisruptionBudget per version: one of the two."""

    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None


DisruptionBudgetField = Annotated[
    Annotated[Literal["off"], Tag(SCALAR_TAG)] | Annotated[DisruptionBudget, Tag(MAPPING_TAG)],
    Discriminator(_scalar_or_mapping),
]


class Toleration(Model):
    key: Annotated[str, Field(pattern=_LABEL_KEY_PATTERN, max_length=317)] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str, Field(pattern=_LABEL_VALUE_PATTERN, max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: StrictInt | None = None


class TopologySpread(Model):
    """Spreads one version's pods; the label selector is the version's own (meshc writes it)."""

    max_skew: Annotated[StrictInt, Field(ge=1, le=1000)]
    topology_key: Annotated[str, Field(pattern=_LABEL_KEY_PATTERN, max_length=317)]
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = "DoNotSchedule"
    min_domains: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None


# Kubernetes' Affinity (core/v1), field for field: written to the pod template as given. The
# shapes, ranges and names are checked here; the rules between fields (which operator takes
# values) are the semantic check pod_affinity (E717), as the API server applies them.
LabelKey = Annotated[str, Field(pattern=_LABEL_KEY_PATTERN, max_length=317)]
LabelValue = Annotated[str, Field(pattern=_LABEL_VALUE_PATTERN, max_length=63)]
AffinityWeight = Annotated[StrictInt, Field(ge=1, le=100)]


class NodeSelectorRequirement(Model):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] | None = None


class NodeFieldRequirement(Model):
    """A node's own field: only its name can be selected, by exactly one value."""

    key: Literal["metadata.name"]
    operator: Literal["In", "NotIn"]
    values: Annotated[list[ObjectName], Field(min_length=1, max_length=1)]


class NodeSelectorTerm(Model):
    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeFieldRequirement] | None = None


class NodeSelector(Model):
    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(min_length=1)]


class PreferredSchedulingTerm(Model):
    weight: AffinityWeight
    preference: NodeSelectorTerm


class NodeAffinity(Model):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = None


class LabelSelectorRequirement(Model):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] | None = None


class LabelSelector(Model):
    match_labels: LabelMap | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class PodAffinityTerm(Model):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: list[Annotated[str, Field(pattern=_DNS_LABEL_PATTERN, max_length=63)]] | None = None
    topology_key: LabelKey
    match_label_keys: list[LabelKey] | None = None
    mismatch_label_keys: list[LabelKey] | None = None


class WeightedPodAffinityTerm(Model):
    weight: AffinityWeight
    pod_affinity_term: PodAffinityTerm


class PodAffinity(Model):
    """podAffinity and podAntiAffinity alike."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = None


class Affinity(Model):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class PodSettings(Model):
    """Scheduling and metadata of the service's pods."""

    labels: LabelMap | None = None
    annotations: dict[Annotated[str, Field(pattern=_LABEL_KEY_PATTERN, max_length=317)], str] | None = None
    node_selector: LabelMap | None = None
    tolerations: list[Toleration] | None = None
    affinity: Affinity | None = None
    topology_spread_constraints: list[TopologySpread] | None = None
    priority_class_name: ObjectName | None = None
    image_pull_secrets: list[ObjectName] | None = None
    termination_grace_period_seconds: Seconds | None = None


class Version(Model):
    name: Name
    image: Image | None = None
    replicas: Replicas | None = None
    weight: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    resources: Resources | None = None
    # workloads: a version's own container settings, over the service's
    env: EnvMap | None = None
    command: Command | None = None
    args: Command | None = None


class Endpoint(Model):
    address: EndpointAddress
    port: Port
    weight: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None


class Upstream(Model):
    service: Name
    local_port: Port
    timeout: Timeout | None = None
    retries: Retries | None = None
    failure_policy: FailurePolicy | None = None
    # workloads: the app's variables for this upstream ({host} {port} {address} {url})
    env: dict[EnvName, Annotated[str, Field(max_length=4096)]] | None = None


class Service(Model):
    """A service of the mesh. `mtls`, `extraCallers` and `tls` are the zero-trust fields (models at
    the end of this module)."""

    name: Name
    image: Image | None = None
    port: Port | None = None      # None: a client-only service (no inbound listener, no Service)
    protocol: Protocol = Protocol.HTTP
    replicas: Replicas | None = None
    resources: Resources | None = None
    env: EnvMap | None = None
    health_check: HealthCheck | None = None
    upstreams: list[Upstream] = []
    load_balancer: LoadBalancerField | None = None
    connect_timeout: Timeout | None = None
    versions: Annotated[list[Version], Field(min_length=1)] | None = None
    outlier_detection: OutlierDetection | None = None
    circuit_breaker: CircuitBreaker | None = None
    endpoints: Annotated[list[Endpoint], Field(min_length=1)] | None = None
    routes: list[Route] | None = None
    rate_limit: RateLimit | None = None
    mtls: MtlsMode | None = None
    extra_callers: list[ExtraCaller] | None = None
    tls: ExternalTls | None = None
    # workloads: what real applications need (DESIGN 11)
    service_port: Port | None = None
    command: Command | None = None
    args: Command | None = None
    volumes: list[Volume] | None = None
    security_context: SecurityContext | None = None
    init_containers: list[InitContainer] | None = None
    probes: Probes | None = None
    autoscaling: Autoscaling | None = None
    disruption_budget: DisruptionBudgetField | None = None
    pod: PodSettings | None = None


# --- mesh-wide settings ---------------------------------------------------------------------

class Proxy(Model):
    image: Image = SIDECAR_IMAGE
    admin_port: Port = 9901
    inbound_port: Port = 15006
    stats_port: Port = 15090
    access_log: AccessLog = AccessLog.JSON
    resources: Resources | None = None
    # workloads: sidecar lifecycle
    native_sidecar: StrictBool = True
    drain_duration: Annotated[int, DurationBounds(0, 300_000)] = Field(default=PROXY_DRAIN_MS, json_schema_extra={"default": "5s"})


class Etcd(Model):
    prefix: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class Defaults(Model):
    load_balancer: LoadBalancerField | None = None
    connect_timeout: Timeout | None = None
    timeout: Timeout | None = None
    retries: Retries | None = None
    failure_policy: FailurePolicy | None = None
    outlier_detection: OutlierDetection | None = None
    circuit_breaker: CircuitBreaker | None = None


WarningCode = Annotated[str, Field(pattern=r"^W[0-9]{3}$")]


class Ignore(Model):
    """A warning the team has looked at and accepted: its code, for one service or everywhere."""

    code: WarningCode
    service: Name | None = None


class Analysis(Model):
    """Budgets for the call-graph analysis (retry amplification, entry points), accepted warnings."""

    max_retry_amplification: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 10
    entry_points: list[Name] | None = None
    ignore: list[Ignore] | None = None


# Default factories are named functions, not lambdas, so that the compiled validator that calls them
# can be pickled (meshc.validate.compiled); model_construct() builds no validator.
def _default_security() -> Security:
    return Security.model_construct()


def _default_certificates() -> Certificates:
    return Certificates.model_construct()


class MeshSpec(Model):
    namespace: Name | None = None
    # model_construct() is Proxy() without building Proxy's validator: every field keeps its default.
    proxy: Proxy = Proxy.model_construct()
    etcd: Etcd = Etcd.model_construct()
    defaults: Defaults = Defaults.model_construct()
    analysis: Analysis = Analysis.model_construct()
    security: Security = Field(default_factory=_default_security)
    services: Annotated[list[Service], Field(min_length=1)]
    gateways: list[Gateway] | None = None


class Metadata(Model):
    name: Name


class Mesh(Model):
    """The whole file."""

    api_version: Literal["meshc.dev/v1alpha1"]
    kind: Literal["Mesh"]
    metadata: Metadata
    spec: MeshSpec


# --- request routing, faults, rate limits and gateways (DESIGN §10) -------------------------
# Header names are plain strings here; the semantic checks refuse what is not an RFC 7230 token
# (E606) with a message of their own, so nothing but a token reaches Envoy's configuration.

# Envoy counts a percentage in millionths (FractionalPercent, denominator MILLION): a share above 0
# but under 0.0001% would round to nothing and silently turn the fault or mirror off. Istio refuses
# the same range (pkg/config/validation: "neither 0.0, nor in range [0.0001, 100.0]").
MIN_PERCENT = 0.0001


def _percent_granularity(value: float) -> float:
    if 0 < value < MIN_PERCENT:
        raise PydanticCustomError(
            "percent_range", "{value} is out of range: a percentage is 0, or between {low} and 100 (Envoy counts "
            "in millionths, and would round it to 0)", {"value": value, "low": MIN_PERCENT})
    return value


Percent = Annotated[float, Field(ge=0, le=100), AfterValidator(_percent_granularity)]
MatchText = Annotated[str, Field(min_length=1, max_length=4096)]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class StringMatch(Model):
    """How one header or query parameter must look: exactly one of these."""

    exact: Annotated[str, Field(max_length=4096)] | None = None
    prefix: MatchText | None = None
    suffix: MatchText | None = None
    regex: MatchText | None = None
    present: Literal[True] | None = None
    absent: Literal[True] | None = None


# A URL path as it travels: printable ASCII without spaces, '?' or '#' (other characters are
# percent-encoded on the wire, so a prefix holding them could never match; the Gateway API's
# HTTPPathMatch pattern refuses them too).
_URL_PATH_PATTERN = r'^/[!"$->@-~]*$'


class PathMatch(Model):
    """Exactly one of prefix, exact, regex; prefix and exact start with '/'."""

    prefix: Annotated[str, Field(pattern=_URL_PATH_PATTERN, max_length=4096)] | None = None
    exact: Annotated[str, Field(pattern=_URL_PATH_PATTERN, max_length=4096)] | None = None
    regex: MatchText | None = None


class RouteMatch(Model):
    path: PathMatch | None = None
    headers: dict[str, StringMatch] | None = None
    methods: Annotated[list[HttpMethod], Field(min_length=1)] | None = None
    query: dict[Annotated[str, Field(min_length=1, max_length=256)], StringMatch] | None = None
    callers: Annotated[list[Name], Field(min_length=1)] | None = None


class WeightedVersion(Model):
    name: Name
    weight: Annotated[StrictInt, Field(ge=0, le=100)]


class FaultDelay(Model):
    duration: Timeout
    percent: Percent = 100


class FaultAbort(Model):
    status: Annotated[StrictInt, Field(ge=200, le=599)] | None = None
    grpc_status: Annotated[StrictInt, Field(ge=1, le=16)] | None = None
    percent: Percent = 100


class Fault(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class Mirror(Model):
    """A copy of each request (fire and forget) to another version of this service, or another service."""

    version: Name | None = None
    service: Name | None = None
    percent: Percent = 100


class Rewrite(Model):
    prefix: Annotated[str, Field(pattern=_URL_PATH_PATTERN, max_length=4096)]


class HeaderChanges(Model):
    set: dict[str, HeaderValue] | None = None
    remove: list[str] | None = None


class HeaderMutations(Model):
    request: HeaderChanges | None = None
    response: HeaderChanges | None = None


class Route(Model):
    """One rule in every caller's route table for this service; the first that matches wins."""

    name: Name | None = None
    match: RouteMatch | None = None
    version: Name | None = None
    versions: Annotated[list[WeightedVersion], Field(min_length=1)] | None = None
    timeout: Timeout | None = None
    retries: Retries | None = None
    fault: Fault | None = None
    mirror: Mirror | None = None
    rewrite: Rewrite | None = None
    headers: HeaderMutations | None = None


class RateLimit(Model):
    """Inbound token bucket: `burst` tokens (default `requests`), `requests` more every `per`."""

    requests: Annotated[StrictInt, Field(ge=1, le=1_000_000_000)]
    # Envoy refuses a token bucket refilled more often than every 50ms ("fill timer must be >= 50ms").
    per: Annotated[int, DurationBounds(50, 24 * 3_600_000)] = Field(default=1000, json_schema_extra={"default": "1s"})
    burst: Annotated[StrictInt, Field(ge=1, le=1_000_000_000)] | None = None


def _dns_label_lengths(value: str) -> str:
    """A DNS name's labels hold 63 characters at most (RFC 1035; Consul's ingress gateway refuses a
    longer one as "not a valid DNS hostname")."""
    if any(len(label) > 63 for label in value.split(".")):
        raise PydanticCustomError("host_label", "{value} is not a DNS name: a label holds at most 63 characters",
                                  {"value": repr(value)})
    return value


GatewayHost = Annotated[str, Field(min_length=1, max_length=253,
                                 pattern=r"^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$"),
                        AfterValidator(_dns_label_lengths)]
SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]


class GatewayTls(Model):
    secret_name: SecretName


class GatewayListener(Model):
    port: Port
    hosts: Annotated[list[GatewayHost], Field(min_length=1)]
    tls: GatewayTls | None = None
    redirect_to_https: StrictBool = False


class GatewayRouteMatch(Model):
    host: GatewayHost | None = None
    path: PathMatch | None = None


class GatewayRoute(Model):
    match: GatewayRouteMatch = GatewayRouteMatch.model_construct()
    service: Name
    timeout: Timeout | None = None
    rewrite: Rewrite | None = None


class Gateway(Model):
    """North-south entry: an Envoy Deployment behind a LoadBalancer Service."""

    name: Name
    replicas: Replicas = 1
    listeners: Annotated[list[GatewayListener], Field(min_length=1)]
    routes: Annotated[list[GatewayRoute], Field(min_length=1)]
# --- zero trust: identities, mTLS, authorization (DESIGN.md section 9) -------------------------

_DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DnsSubdomain = Annotated[str, Field(pattern=_DNS_SUBDOMAIN_PATTERN, max_length=253)]
# A certificate lives between an hour and a year; renewal happens some minutes before expiry.
CertificateDuration = Annotated[int, DurationBounds(3_600_000, 8760 * 3_600_000)]
RenewBefore = Annotated[int, DurationBounds(300_000, 8760 * 3_600_000)]


class ExtraCaller(Model):
    """An identity outside the call graph that may call the service (an ingress controller)."""

    namespace: Name
    service_account: DnsSubdomain


def _sni(value: str) -> str:
    """A name TLS can send as SNI and check the certificate for (a DNS SAN): RFC 6066 has no room for
    an IP address, and a certificate names an address as an IP SAN, never a DNS one."""
    labels = value.split(".")
    if labels[-1].isdigit():
        raise PydanticCustomError("sni", "{value} is an IP address (or ends in an all-digit label, as one does): sni "
                                  "is the host name the server's certificate is issued for (RFC 6066 takes no "
                                  "address there)", {"value": repr(value)})
    if any(len(label) > 63 for label in labels):
        raise PydanticCustomError("sni", "{value} is not a host name: a DNS label holds at most 63 characters",
                                  {"value": repr(value)})
    return value


class ExternalTls(Model):
    """TLS origination to an external (static-endpoint) service."""

    sni: Annotated[DnsSubdomain, AfterValidator(_sni)] | None = None      # default: the endpoints' host name
    ca_bundle: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^(system|/[^\s]*)$")] = "system"
    host_rewrite: StrictBool = True


class IssuerRef(Model):
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    name: DnsSubdomain


class Certificates(Model):
    issuer_ref: IssuerRef | None = None
    duration: CertificateDuration = Field(default=24 * 3_600_000, json_schema_extra={"default": "24h"})
    renew_before: RenewBefore = Field(default=8 * 3_600_000, json_schema_extra={"default": "8h"})


class Security(Model):
    mtls: MtlsMode = MtlsMode.STRICT
    trust_domain: DnsSubdomain = "cluster.local"
    certificates: Certificates = Field(default_factory=_default_certificates)
    network_policies: StrictBool = True
    monitoring_namespace: Name | None = None


def spec_names(model: type[Model]) -> dict[str, str]:
    """Each field's name in the spec (its alias), by field name. pydantic applies the alias
    generator to a field whose type it has not resolved yet (a quoted class declared further down)
    only when the model is built, and with the compiled validator (meshc.validate.compiled) most
    models never are: such a field is given the alias the build would give it."""
    return {name: info.alias or to_camel(name) for name, info in model.model_fields.items()}


def json_schema() -> dict[str, Any]:
    schema = Mesh.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://meshc.dev/schemas/mesh.v1alpha1.json"
    schema["title"] = "meshc Mesh (meshc.dev/v1alpha1)"
    return schema
