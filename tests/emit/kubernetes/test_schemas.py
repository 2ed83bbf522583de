"""Every generated Kubernetes object validates strictly against the real OpenAPI schemas.

Versions: Kubernetes 1.29 (the first with native sidecars on by default, which meshc's pods use
unless `proxy.nativeSidecar: false`) and the newest minor that kubernetes-validate bundles; a
further test walks every bundled minor for one rich mesh, with ordinary sidecar containers before
1.29.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from packaging.version import Version as PackagingVersion

from meshc import kinds
from meshc.bundle import Bundle
from meshc.emit import kubernetes, naming
from meshc.load import SpecSource, read_spec_file
from meshc.pipeline import compile
from tests.build.specs import dump_spec, synthetic_spec
from tests.emit.kubernetes import schemas
from tests.emit.kubernetes.meshes import EXAMPLES, ROOT, fake_sidecars, mesh_from_yaml
from tests.emit.kubernetes.test_emit import PROTOCOLS

NATIVE_SIDECARS = "1.29.0"
VERSIONS = [NATIVE_SIDECARS, schemas.bundled_versions()[-1]]
BASE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment"}


def for_version(spec: str, version: str) -> str:
    """The spec as a cluster of that version can run it: ordinary sidecars before 1.29."""
    if PackagingVersion(version) >= PackagingVersion(NATIVE_SIDECARS):
        return spec
    if "\n  proxy:\n" in spec:
        return spec.replace("\n  proxy:\n", "\n  proxy:\n    nativeSidecar: false\n", 1)
    return spec.replace("\nspec:\n", "\nspec:\n  proxy: {nativeSidecar: false}\n", 1)


def build(source: SpecSource) -> Bundle:
    compiled = compile(source)
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    return compiled.bundle


@pytest.fixture(scope="module", params=EXAMPLES)
def example_bundle(request: pytest.FixtureRequest) -> Bundle:
    return build(read_spec_file(str(ROOT / "examples" / request.param / "mesh.yaml")))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_of_every_example_is_schema_valid(example_bundle: Bundle, version: str) -> None:
    objects = list(example_bundle.kubernetes_objects())
    assert BASE_KINDS | {"Issuer", "Certificate", "NetworkPolicy"} <= {o["kind"] for o in objects} \
        <= set(kinds.APPLY_ORDER)   # the examples use mTLS
    problems = [problem for obj in objects for problem in schemas.errors(obj, version)]
    assert problems == []


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_of_a_large_varied_mesh_is_schema_valid(version: str) -> None:
    bundle = build(SpecSource("mesh.yaml", dump_spec(synthetic_spec(services=60, seed=11)).encode()))
    objects = list(bundle.kubernetes_objects())
    assert len(objects) > 200
    problems = [problem for obj in objects for problem in schemas.errors(obj, version)]
    assert problems == []


@pytest.mark.parametrize("version", schemas.bundled_versions())
def test_every_protocol_and_option_is_schema_valid_on_every_bundled_version(version: str) -> None:
    bundle = build(SpecSource("mesh.yaml", for_version(PROTOCOLS, version).encode()))
    problems = [problem for obj in bundle.kubernetes_objects() for problem in schemas.errors(obj, version)]
    assert problems == []


def test_the_cached_validators_agree_with_kubernetes_validate() -> None:
    mesh = mesh_from_yaml(PROTOCOLS)
    documents = kubernetes.emit(mesh, fake_sidecars(mesh))
    objects = [o for path, docs in documents.items() if path != naming.KUSTOMIZATION_PATH for o in docs]
    for obj in objects:
        for version in VERSIONS:
            if not obj["apiVersion"].startswith("cert-manager.io/"):   # CRDs: kubernetes-validate has no schema
                kubernetes_validate.validate(obj, version, strict=True)   # raises on any violation
            assert schemas.errors(obj, version) == []
    broken = _with_unknown_container_field(next(o for o in objects if o["kind"] == "Deployment"))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    assert schemas.errors(broken, VERSIONS[-1]) != []


@pytest.mark.parametrize("version", VERSIONS)
def test_strict_schemas_catch_what_a_typo_would_do(version: str) -> None:
    mesh = mesh_from_yaml(PROTOCOLS)
    deployment = kubernetes.emit(mesh, fake_sidecars(mesh))[naming.kubernetes_path("edge")][-1]
    assert schemas.errors(deployment, version) == []
    assert schemas.errors(_with_unknown_container_field(deployment), version)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    assert schemas.errors(wrong_type, version)


def _with_unknown_container_field(deployment: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True   # note the capital S
    return broken


def test_the_cert_manager_schema_is_a_schema_and_refuses_what_cert_manager_would() -> None:
    import json

    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(schemas.CERT_MANAGER_SCHEMA.read_text()))
    bundle = build(read_spec_file(str(ROOT / "examples" / "shop" / "mesh.yaml")))
    certificate = next(o for o in bundle.kubernetes_objects() if o["kind"] == "Certificate")
    issuer = next(o for o in bundle.kubernetes_objects() if o["kind"] == "Issuer")
    assert schemas.errors(certificate, VERSIONS[-1]) == [] and schemas.errors(issuer, VERSIONS[-1]) == []
    broken = copy.deepcopy(certificate)
    broken["spec"]["privateKey"] |= {"algorithm": "ECDSA", "size": 2048}
    broken["spec"]["usages"] = ["server auth", "client-auth"]
    broken["spec"]["duration"] = "1 day"
    broken["spec"]["subjectAltNames"] = ["x"]
    del broken["spec"]["secretName"]
    found = "\n".join(schemas.errors(broken, VERSIONS[-1]))
    for problem in ("2048", "client-auth", "1 day", "subjectAltNames", "secretName"):
        assert problem in found
    issuer_broken = copy.deepcopy(issuer)
    issuer_broken["spec"]["ca"] = {}
    assert schemas.errors(issuer_broken, VERSIONS[-1])


ZERO_TRUST = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: zt}
spec:
  security:
    mtls: strict
    trustDomain: prod.example.org
    certificates: {issuerRef: {kind: ClusterIssuer, name: corp-ca}, duration: 72h, renewBefore: 90m}
    monitoringNamespace: monitoring
  analysis: {entryPoints: [web]}
  services:
  - name: web
    image: web:1
    port: 8080
    extraCallers: [{namespace: ingress, serviceAccount: nginx.ingress}]
    upstreams: [{service: api, localPort: 9001}, {service: db, localPort: 9002}, {service: ext, localPort: 9003},
                {service: legacy, localPort: 9004}, {service: cache, localPort: 9005}]
  - name: api
    mtls: permissive
    port: 9090
    protocol: grpc
    versions: [{name: v1, image: api:1, weight: 50}, {name: v2, image: api:2, weight: 50}]
  - name: db
    image: db:1
    port: 5432
    protocol: tcp
  - name: cache
    mtls: permissive
    image: cache:1
    port: 6379
    protocol: tcp
  - name: ext
    port: 443
    tls: {sni: api.example.com, caBundle: /etc/ssl/corp.pem}
    endpoints: [{address: 203.0.113.9, port: 443}, {address: "2001:db8::9", port: 443}]
  - name: legacy
    port: 8080
    endpoints: [{address: legacy.corp.example, port: 8080}]
"""


@pytest.mark.parametrize("version", schemas.bundled_versions())
def test_every_zero_trust_option_is_schema_valid_on_every_bundled_version(version: str) -> None:
    bundle = build(SpecSource("mesh.yaml", for_version(ZERO_TRUST, version).encode()))
    objects = list(bundle.kubernetes_objects())
    assert {"Certificate", "NetworkPolicy"} <= {o["kind"] for o in objects}
    assert "Issuer" not in {o["kind"] for o in objects}          # issuerRef names another
    problems = [problem for obj in objects for problem in schemas.errors(obj, version)]
    assert problems == []
