"""The catalogue of diagnostic codes: stable identifiers, one line of meaning each.

Every code here is documented in docs/diagnostics.md with a failing and a fixed example; a test
keeps the two in step. Codes are never reused for another meaning.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    # E0xx: reading and parsing the file
    "E001": "the spec file cannot be read",
    "E002": "the file is not UTF-8 text",
    "E003": "the file is empty",
    "E004": "a tab character is used for indentation",
    "E005": "YAML syntax error",
    "E006": "duplicate key in a mapping",
    "E007": "the document is not a mapping",
    "E008": "aliases expand beyond the allowed size, or refer to themselves",
    "E009": "the file is larger than the allowed size",
    "E010": "more than one YAML document in the file",
    "E011": "a mapping key is not a plain string",
    "E012": "unsupported YAML tag",
    "E013": "the file holds more keys and values than a spec may",
    # E1xx: structure, types and ranges
    "E101": "unknown field",
    "E102": "missing required field",
    "E103": "wrong type",
    "E104": "value out of range",
    "E105": "invalid duration",
    "E106": "value is not one of the allowed choices",
    "E107": "unsupported apiVersion",
    "E108": "unsupported kind",
    "E109": "name is not a DNS-1123 label",
    "E110": "invalid value",
    "E111": "text holds a character no generated file may carry (control, C1, line separator, noncharacter)",
    "E112": "an endpoint address is not an IPv4 address, an IPv6 address or a DNS name",
    # E2xx: meaning across the spec
    "E201": "upstream refers to a service that does not exist",
    "E202": "duplicate service name",
    "E203": "duplicate version name",
    "E204": "duplicate localPort in one service",
    "E205": "localPort clashes with the application port or a proxy port",
    "E206": "version weights do not sum to 100",
    "E207": "weighted load balancing with nothing carrying a weight",
    "E208": "hash-based load balancing without a hash key (hashOn)",
    "E209": "static endpoints combined with versions, image or replicas",
    "E210": "a deployed service has no image",
    "E211": "unknown retryOn condition",
    "E212": "failurePolicy fail_fast together with retries on the same upstream",
    "E213": "etcd prefix does not start with '/'",
    "E214": "two proxy ports are the same, or clash with an application port",
    "E215": "duplicate static endpoint",
    "E217": "an external service (static endpoints) cannot have upstreams",
    "E218": "a version weight is set on some versions but not all",
    "E219": "a generated Kubernetes name would be invalid (too long, or not starting with a letter)",
    "E220": "analysis refers to a service that does not exist",
    "E221": "backoff maxInterval is shorter than baseInterval",
    "E222": "generated Kubernetes objects would share a name (or a service takes a reserved name)",
    "E230": "the etcd prefix is '/', the root of the whole keyspace",
    # E25x: sizes of generated objects against the limits of Kubernetes and etcd
    "E250": "a sidecar's Envoy files exceed the Kubernetes ConfigMap size limit (1 MiB)",
    # W2xx: suspicious but valid
    "W001": "a byte order mark at the start of the file was ignored",
    "W201": "retries cannot all happen within the route timeout",
    "W202": "hashOn is set but the load balancer does not hash",
    "W203": "endpoint weights are ignored by this load balancer",
    "W204": "a version with weight 0 receives no traffic",
    "W205": "perTryTimeout is longer than the route timeout",
    "W206": "health check timeout is not shorter than its interval",
    "W207": "HTTP route policies (timeout, retries, hashOn header) do not apply to a tcp service",
    "W208": "retries to a gRPC service list no gRPC condition, so gRPC errors are never retried",
    "W209": "retryOn, perTryTimeout or backoff set where attempts is 0, so they have no effect",
    "W210": "a spec.analysis.ignore entry matches no warning",
    # W3xx / E3xx: call-graph analysis
    "W301": "retry amplification along a call path exceeds the budget",
    "W302": "a caller's timeout is shorter than what its callee may take",
    "W303": "the call graph has a cycle",
    "W304": "a service nobody calls is not declared an entry point",
    # E5xx/W5xx: zero trust (mTLS identities, authorization, network policy)
    "E501": "certificates.renewBefore is not shorter than certificates.duration",
    "E502": "mtls or extraCallers on an external service, which has no sidecar to enforce them",
    "E503": "tls (TLS origination) on a deployed service; it belongs on an external service",
    "E504": "tls without sni on an external service whose endpoints are IP addresses",
    "E505": "an extraCallers entry names a service of this mesh; declare the call in its upstreams",
    "W501": "under mTLS a service accepts no caller: no service calls it, no extraCallers, not an entry point",
    "W502": "an external service on port 443 without tls: callers' sidecars would send it plaintext",
    "W503": "a NetworkPolicy cannot name a host: egress to this external service is open to any address",
    # E4xx: editing mesh.yaml in place (meshc set-weights)
    "E401": "set-weights names a service that does not exist",
    "E402": "set-weights names a version the service does not have",
    "E403": "set-weights on a service that declares no versions",
    "E404": "a set-weights argument is not VERSION=WEIGHT with a weight from 0 to 100",
    "E405": "a weight cannot be edited in place (shared through a YAML anchor or alias)",
}
