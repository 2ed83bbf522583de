"""What Istio, Envoy, Consul and Linkerd refuse (and accept), translated to mesh.yaml.

Each row is one rule of another project, with its origin in a comment: a spec fragment added to the
`reviews` service (or as `spec.gateways`), and either the diagnostic meshc must give (code, line,
column) or ACCEPT: then the build is clean and real Envoy accepts the sidecar or gateway it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from meshc.diagnostics import Diagnostic
from meshc.pipeline import BuildOptions, compile
from meshc.load import SpecSource
from tests.support.envoy import validate_config, write_bootstrap
from tests.traffic.sidecars import install, static_bootstrap

# 17 lines: the fragments start on line 18, indented for the `reviews` service (4 spaces) or for
# `spec` (2 spaces, for gateways).
BASE = """\
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata:
  name: rules
spec:
  services:
  - name: web
    image: ghcr.io/acme/web:1.0.0
    port: 8080
    upstreams:
    - service: reviews
      localPort: 9001
  - name: reviews
    port: 9090
    versions:
    - {name: v1, image: r:1, weight: 90}
    - {name: v2, image: r:2, weight: 10}
"""


@dataclass(frozen=True)
class Reject:
    code: str
    line: int
    col: int


@dataclass(frozen=True)
class Accept:
    sidecar: str      # whose Envoy files real Envoy must accept
    warnings: tuple[str, ...] = ()    # the codes of the warnings the spec gets, if any


def _route(body: str) -> str:
    return f"    routes:\n    - {body}\n"


def _gateway(listeners: str, routes: str = "[{match: {path: {prefix: /}}, service: web}]") -> str:
    return f"  gateways:\n  - name: public\n    listeners: {listeners}\n    routes: {routes}\n"


CASES: dict[str, tuple[str, Reject | Accept]] = {
    # --- headers a route changes --------------------------------------------------------------
    # Envoy source/common/router/header_parser.cc: ":-prefixed or host headers may not be modified"
    "set-host": (_route("{headers: {request: {set: {host: a.example.com}}}}"), Reject("E617", 19, 34)),
    # Envoy header_parser.cc: ":-prefixed or host headers may not be removed"; Istio
    # ValidateHTTPHeaderOperationName: `invalid header "Host": cannot set Host header` (case folded)
    "remove-host": (_route("{headers: {response: {remove: [x-debug, Host]}}}"), Reject("E617", 19, 47)),
    "set-forwarded-host": (_route("{headers: {request: {set: {x-forwarded-host: a.example.com}}}}"), Accept("web")),
    # Envoy HeaderMatcher / HeaderValueOption: name is an HTTP_HEADER_NAME (RFC 7230 token)
    "header-name-space": (_route("{match: {headers: {'x user': {exact: a}}}}"), Reject("E606", 19, 26)),
    # Istio TestValidateHTTPHeaderValue (pkg/config/validation/validation_test.go): invalid values
    "value-abc%123": (_route("{headers: {request: {set: {x-a: 'abc%123'}}}}"), Reject("E620", 19, 39)),
    "value-%START_TIME%%": (_route("{headers: {request: {set: {x-a: '%START_TIME%%'}}}}"), Reject("E620", 19, 39)),
    # Envoy substitution formatter: "Not supported field in StreamInfo: FOO_BAR"; "%REQ%" needs a header
    "value-unknown-command": (_route("{headers: {request: {set: {x-a: '%FOO_BAR%'}}}}"), Reject("E620", 19, 39)),
    "value-req-without-header": (_route("{headers: {request: {set: {x-a: '%REQ%'}}}}"), Reject("E620", 19, 39)),
    # Istio TestValidateHTTPHeaderValue: valid values (Envoy accepts them too)
    "value-commands": (_route("{headers: {request: {set: {x-a: '100%%', x-b: 'on %HOSTNAME% for %REQ(x-user):10%',"
                              " x-c: '%DYNAMIC_METADATA(com.test.my_filter)%'}}}}"), Accept("web")),
    # Consul service-router Validate: "Methods contains %q more than once"
    "method-twice": (_route("{match: {methods: [GET, PUT, GET]}}"), Reject("E618", 19, 36)),
    "all-methods": (_route("{match: {methods: [GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH]}}"),
                    Accept("web")),
    # Gateway API HTTPRoute (Linkerd's routes): header matches and RequestHeaderModifier.set name each
    # header once, compared without case
    "match-header-twice": (_route("{match: {headers: {X-User: {exact: a}, x-user: {exact: b}}}}"),
                           Reject("E618", 19, 46)),
    "set-header-twice": (_route("{headers: {request: {set: {X-Env: a, x-env: b}}}}"), Reject("E618", 19, 44)),
    # Istio ValidateHTTPHeaderNameOrJwtClaimRoute: a match may name a request pseudo-header
    "pseudo-header-match": (_route("{match: {headers: {':authority': {exact: reviews.shop}, ':path': {prefix: /a}}},"
                                   " version: v2}"), Accept("web")),
    # Consul service-resolver hash policy / Envoy Cookie name: a header token, in spec.defaults too
    "defaults-cookie-name": ("  defaults: {loadBalancer: {policy: ring_hash, hashOn: {cookie: {name: 'my cookie'}}}}\n",
                             Reject("E606", 18, 72)),
    # Consul service-intentions Validate: a source named twice
    "extra-caller-twice": ("    extraCallers: [{namespace: ingress, serviceAccount: nginx}, "
                           "{namespace: ingress, serviceAccount: nginx}]\n", Reject("E618", 18, 65)),
    # Consul service-router Validate: "Header[%d] should only contain one of Present, Exact, ..."
    "two-header-operators": (_route("{match: {headers: {x-a: {exact: a, prefix: b}}}}"), Reject("E603", 19, 31)),
    # Istio validateStringMatch: "prefix string match should not be empty"
    "empty-prefix": (_route("{match: {headers: {x-a: {prefix: ''}}}}"), Reject("E104", 19, 40)),
    # --- regexes ------------------------------------------------------------------------------
    # Envoy source/common/common/regex.cc: "RE2 program size of N > max program size of 100"
    "regex-size-101": (_route("{match: {path: {regex: '/items/[a-z0-9]{45}'}}}"), Reject("E610", 19, 30)),
    "regex-size-100": (_route("{match: {path: {regex: '/items/[a-z0-9]{44}/'}}}"), Accept("web")),
    "header-regex-size": (_route("{match: {headers: {x-digest: {regex: 'sha256=[0-9a-f]{64}'}}}}"),
                          Reject("E610", 19, 44)),
    "gateway-regex-size": (_gateway("[{port: 8000, hosts: ['*']}]",
                                    "[{match: {path: {regex: '/items/[a-z0-9]{45}'}}, service: web}]"),
                           Reject("E610", 21, 37)),
    # Istio validateStringMatchRegexp: "Istio uses RE2 style regex-based match"
    "regex-lookahead": (_route("{match: {path: {regex: '/a(?!b)'}}}"), Reject("E610", 19, 30)),
    # --- retries, timeouts ----------------------------------------------------------------------
    # Envoy source/common/router/retry_policy_impl.cc: "max_interval must be greater than or equal to
    # the base_interval"
    "route-backoff-order": (_route("{retries: {attempts: 2, backoff: {baseInterval: 1s, maxInterval: 10ms}}}"),
                            Reject("E221", 19, 72)),
    "route-backoff-equal": (_route("{retries: {attempts: 2, backoff: {baseInterval: 1s, maxInterval: 1s}}}"),
                            Accept("web")),
    # Istio ValidateHTTPRetry: "attempts cannot be negative"
    "negative-attempts": (_route("{retries: {attempts: -1}}"), Reject("E104", 19, 28)),
    # Istio ValidateHTTPRetry: `%q is not a valid retryOn policy`
    "unknown-retry-on": (_route("{retries: {attempts: 1, retryOn: [5xx, on-error]}}"), Reject("E211", 19, 46)),
    # Istio ValidateHTTPRetry: a status code must be an HTTP status
    "retry-on-600": (_route("{retries: {attempts: 1, retryOn: [600]}}"), Reject("E211", 19, 41)),
    "retry-on-codes": (_route("{retries: {attempts: 10, retryOn: [100, 503, 599, reset]}}"), Accept("web", ("W301",))),
    # Envoy router: the gRPC retry-on conditions read grpc-status, which an HTTP answer never carries
    "grpc-conditions-on-http": ("  defaults: {retries: {attempts: 2, retryOn: [unavailable, cancelled]}}\n",
                                Accept("web", ("W212",))),
    # Linkerd pkg/profiles Validate: "has a route with an invalid timeout"
    "route-timeout-garbage": (_route("{timeout: 2 seconds}"), Reject("E105", 19, 17)),
    # Linkerd ValidateResponseMatch: "Range minimum must be between 100 and 599, inclusive"
    "retry-on-99": (_route("{retries: {attempts: 1, retryOn: [99]}}"), Reject("E211", 19, 41)),
    # Istio agent.ValidateDuration: "duration must be at least 1ms"; Envoy per_try_timeout
    "per-try-zero": (_route("{retries: {attempts: 1, perTryTimeout: 0s}}"), Reject("E104", 19, 46)),
    # --- faults and mirrors -------------------------------------------------------------------
    # Istio validatePercentage: "percentage %v is neither 0.0, nor in range [0.0001, 100.0]"
    "fault-percent-tiny": (_route("{fault: {abort: {status: 503, percent: 0.00005}}}"), Reject("E104", 19, 46)),
    "fault-percent-bounds": (_route("{fault: {abort: {status: 503, percent: 0.0001}, delay: {duration: 1s, percent: 0}}}"),
                             Accept("web")),
    # Istio validateHTTPMirrors: "mirror percentage must have a max value of 100"
    "mirror-over-100": (_route("{version: v1, mirror: {version: v2, percent: 100.5}}"), Reject("E104", 19, 52)),
    # Istio validateHTTPStatus: "HTTP status %d is not in range 200-599"; Envoy HTTPFault [200, 600)
    "abort-600": (_route("{fault: {abort: {status: 600}}}"), Reject("E104", 19, 32)),
    "abort-199": (_route("{fault: {abort: {status: 199}}}"), Reject("E104", 19, 32)),
    "abort-bounds": (_route("{fault: {abort: {status: 200, percent: 5}, delay: {duration: 1s, percent: 1}}}"),
                     Accept("web")),
    # Istio validateHTTPFaultInjection: "HTTP fault injection must have an abort and/or a delay"
    "empty-fault": (_route("{fault: {}}"), Reject("E603", 19, 15)),
    # --- splits and rewrites ------------------------------------------------------------------
    # Consul service-splitter Validate: "split destination occurs more than once"
    "split-twice": (_route("{versions: [{name: v1, weight: 50}, {name: v1, weight: 50}]}"), Reject("E203", 19, 50)),
    # Consul splitter / Istio: "the sum of all split weights must be 100"
    "split-sum": (_route("{versions: [{name: v1, weight: 50}, {name: v2, weight: 40}]}"), Reject("E602", 19, 8)),
    # Consul service-router: "cannot make use of PrefixRewrite without configuring either PathExact or
    # PathPrefix"; Envoy and Istio accept it and replace the whole path: meshc warns
    "rewrite-regex": (_route("{match: {path: {regex: '/v1/.*'}}, rewrite: {prefix: /v2/}}"), Accept("web", ("W603",))),
    "rewrite-exact": (_route("{match: {path: {exact: /v1}}, rewrite: {prefix: /v2}}"), Accept("web")),
    # Consul service-router: "PathExact doesn't start with '/'"
    "exact-without-slash": (_route("{match: {path: {exact: v1}}}"), Reject("E110", 19, 30)),
    # Gateway API HTTPPathMatch: a path is RFC 3986 characters (others percent-encoded), so a prefix
    # with a space or a non-ASCII letter never matches a request
    "path-unicode": (_route("{match: {path: {prefix: /café}}}"), Reject("E110", 19, 31)),
    "path-percent-encoded": (_route("{match: {path: {prefix: /caf%C3%A9}}, rewrite: {prefix: '/a(b)'}}"), Accept("web")),
    # Istio DestinationRule: "duplicate subset names"
    "duplicate-subset": ("  - {name: ratings, image: r:1, port: 9000, versions: [{name: v1, weight: 50}, "
                         "{name: v1, weight: 50}]}\n", Reject("E203", 18, 87)),
    # --- rate limits ----------------------------------------------------------------------------
    # Envoy source/extensions/filters/common/local_ratelimit: "fill timer must be >= 50ms"
    "fill-49ms": ("    rateLimit: {requests: 5, per: 49ms}\n", Reject("E104", 18, 35)),
    "fill-50ms": ("    rateLimit: {requests: 5, per: 50ms, burst: 1}\n", Accept("reviews")),
    # --- destination policies -------------------------------------------------------------------
    # Istio validateOutlierDetection: ValidatePercent(MaxEjectionPercent) "not in range 0..100"
    "ejection-101": ("    outlierDetection: {consecutive5xx: 1, maxEjectionPercent: 101}\n", Reject("E104", 18, 63)),
    "ejection-bounds": ("    outlierDetection: {consecutive5xx: 1, interval: 1ms, baseEjectionTime: 1ms, "
                        "maxEjectionPercent: 100}\n", Accept("web")),
    # Istio validateConnectionPool: "http1 max pending requests must be non-negative"
    "negative-pending": ("    circuitBreaker: {maxPendingRequests: -1}\n", Reject("E104", 18, 42)),
    # Envoy CircuitBreakers.Thresholds: max_retries 0 (or a retry budget of 0%) lets no retry through,
    # so the callers' retries are unreachable (a warning: the build stays valid)
    "no-retry-through": ("    circuitBreaker: {maxRetries: 0}\n", Accept("web", ("W211",))),
    # Linkerd pkg/profiles Validate: "RetryBudget RetryRatio must be non-negative"
    "negative-retry-budget": ("    circuitBreaker: {retryBudget: {percent: -5}}\n", Reject("E104", 18, 45)),
    # Envoy HealthCheck PGV: interval { gt: {} }; Cluster.connect_timeout { gt: {} }
    "health-interval-zero": ("    healthCheck: {path: /healthz, interval: 0s}\n", Reject("E104", 18, 45)),
    "connect-timeout-zero": ("    connectTimeout: 0s\n", Reject("E104", 18, 21)),
    # Envoy HealthCheck: the path lives in http_health_check only; a tcp service gets tcp_health_check
    # (and a tcpSocket readiness probe), a grpc one grpc_health_check, so a path there is dropped
    "health-path-on-tcp": ("    protocol: tcp\n    healthCheck: {path: /healthz}\n", Accept("web", ("W213",))),
    "health-path-on-grpc": ("    protocol: grpc\n    healthCheck: {path: /healthz}\n", Accept("web", ("W213",))),
    "grpc-health-method-path": ("    protocol: grpc\n    healthCheck: {path: /grpc.health.v1.Health/Check}\n",
                                Accept("web")),
    "health-without-path-on-tcp": ("    protocol: tcp\n    healthCheck: {interval: 2s}\n", Accept("web")),
    # --- gateways -------------------------------------------------------------------------------
    # Envoy RouteConfiguration: "Only unique values for domains are permitted"
    "host-twice": (_gateway("[{port: 8000, hosts: [a.example.com, b.example.com, a.example.com]}]"),
                   Reject("E615", 20, 68)),
    # Istio validateServer: "server config must contain at least one host"
    "no-hosts": (_gateway("[{port: 8000, hosts: []}]"), Reject("E104", 20, 37)),
    # Consul ingress-gateway validateHost: `Host "example..com" must be a valid DNS hostname`; a label
    # holds 63 characters at most
    "host-empty-label": (_gateway("[{port: 8000, hosts: [example..com]}]"), Reject("E110", 20, 38)),
    "host-long-label": (_gateway(f"[{{port: 8000, hosts: [{'a' * 64}.example.com]}}]"), Reject("E110", 20, 38)),
    "host-63-label": (_gateway(f"[{{port: 8000, hosts: [{'a' * 63}.example.com]}}]"), Accept("gateway-public")),
    "wildcards": (_gateway("[{port: 8000, hosts: ['*', '*.example.com', example.com]}]"), Accept("gateway-public")),
    # The gateway normalizes paths and merges slashes before routing (tests/traffic/test_gateway.py):
    # no request path holds '//', '/./' or '/../' then. Gateway API HTTPPathMatch refuses them too.
    "gateway-prefix-double-slash": (_gateway("[{port: 8000, hosts: ['*']}]",
                                             "[{match: {path: {prefix: /api//v1}}, service: web}]"),
                                    Reject("E621", 21, 38)),
    "gateway-exact-dot-dot": (_gateway("[{port: 8000, hosts: ['*']}]",
                                       "[{match: {path: {exact: /a/b/..}}, service: web}]"), Reject("E621", 21, 37)),
    # ...nor an escaped unreserved character (RFC 3986 normalization decodes it); other escapes stay
    "gateway-escaped-tilde": (_gateway("[{port: 8000, hosts: ['*']}]",
                                       "[{match: {path: {prefix: /%7Euser}}, service: web}]"), Reject("E621", 21, 38)),
    "gateway-escaped-slash": (_gateway("[{port: 8000, hosts: ['*']}]",
                                       "[{match: {path: {prefix: /a%2Fb}}, service: web}]"), Accept("gateway-public")),
    # a prefix may end in '/.' or '/..': it matches /a/.well-known, /a/..b
    "gateway-prefix-trailing-dot": (_gateway("[{port: 8000, hosts: ['*']}]",
                                             "[{match: {path: {prefix: /a/.}}, service: web}]"),
                                    Accept("gateway-public")),
}


def _build(name: str, tmp_path: Path) -> tuple[list[Diagnostic], dict[str, bytes] | None]:
    source = SpecSource(name="mesh.yaml", data=(BASE + CASES[name][0]).encode())
    compiled = compile(source, BuildOptions(config_dir=str(tmp_path / "{service}")))
    files = dict(compiled.bundle.files) if compiled.bundle is not None else None
    return list(compiled.checked.diagnostics), files


REJECTS = sorted(name for name, (_, outcome) in CASES.items() if isinstance(outcome, Reject))
ACCEPTS = sorted(name for name, (_, outcome) in CASES.items() if isinstance(outcome, Accept))


@pytest.mark.parametrize("name", REJECTS)
def test_refused_with_its_code_where_it_is_written(name: str, tmp_path: Path) -> None:
    expected = CASES[name][1]
    assert isinstance(expected, Reject)
    diagnostics, files = _build(name, tmp_path)
    found = [(d.code, d.span.line, d.span.col) for d in diagnostics if d.is_error]
    assert found == [(expected.code, expected.line, expected.col)], [str(d) for d in diagnostics]
    assert files is None


@pytest.mark.envoy
@pytest.mark.parametrize("name", ACCEPTS)
def test_accepted_and_real_envoy_accepts_the_output(name: str, tmp_path: Path) -> None:
    expected = CASES[name][1]
    assert isinstance(expected, Accept)
    diagnostics, files = _build(name, tmp_path)
    assert files is not None and not [d for d in diagnostics if d.is_error], [str(d) for d in diagnostics]
    assert tuple(d.code for d in diagnostics) == expected.warnings, [str(d) for d in diagnostics]
    install(files, expected.sidecar, tmp_path)     # the SDS files its listeners and clusters name
    bootstrap = write_bootstrap(static_bootstrap(files, expected.sidecar), tmp_path / "static.json")
    result = validate_config(bootstrap)
    assert result.returncode == 0, result.stderr + result.stdout
