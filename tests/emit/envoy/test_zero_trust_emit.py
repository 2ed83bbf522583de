"""What the zero-trust settings put in the output (Envoy and Kubernetes), and what `mtls: off` leaves out.

Traffic through these configurations is proven in tests/traffic/test_zero_trust.py; here the
shape: which files, which filters, which identities, and the paths `--tls-dir` sets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc import certs
from meshc.emit import naming
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, compile
from tests.emit.kubernetes.test_schemas import ZERO_TRUST
from tests.support.envoy import validate_config, write_bootstrap
from tests.traffic.sidecars import envoy_files, install, mesh_of, static_bootstrap

ROOT = Path(__file__).parents[3]


def spec(mode: str = "strict", **services: dict[str, Any]) -> dict[str, Any]:
    api = {"name": "api", "image": "api:1", "port": 8080, **services.get("api", {})}
    return {
        "apiVersion": "meshc.dev/v1alpha1", "kind": "Mesh", "metadata": {"name": "zt"},
        "spec": {"security": {"mtls": mode}, "analysis": {"entryPoints": ["web"]}, "services": [
            {"name": "web", "image": "web:1", "port": 8080, **services.get("web", {}),
             "upstreams": [{"service": "api", "localPort": 9001}, {"service": "db", "localPort": 9002}]},
            api,
            {"name": "db", "image": "db:1", "port": 5432, "protocol": "tcp", **services.get("db", {})},
        ]},
    }


def files_of(document: dict[str, Any], options: BuildOptions = BuildOptions()) -> dict[str, bytes]:
    compiled = compile(SpecSource("mesh.yaml", yaml.safe_dump(document).encode()), options)
    assert compiled.bundle is not None, [str(d) for d in compiled.diagnostics]
    return dict(compiled.bundle.files)


def resources(files: dict[str, bytes], service: str, name: str) -> dict[str, Any]:
    return {r["name"]: r for r in json.loads(files[naming.envoy_path(service, name)])["resources"]}


def inbound(files: dict[str, bytes], service: str) -> dict[str, Any]:
    listener: dict[str, Any] = resources(files, service, naming.LDS_FILE)[naming.INBOUND_LISTENER]
    return listener


def test_mtls_off_adds_nothing_of_zero_trust() -> None:
    files = files_of(spec("off"))
    text = b"\n".join(files.values())
    for marker in (b"transport_socket", b"rbac", b"tls_inspector", b"spiffe://", b"sds-", b"cert-manager",
                   b"NetworkPolicy", b"meshc-tls", b"downstream_peer_identity"):
        assert marker not in text, marker
    assert not any(path.endswith(tuple(naming.SDS_FILES.values())) for path in files)


def test_strict_callers_present_certificates_and_callees_admit_only_declared_callers() -> None:
    files = files_of(spec())
    clusters = resources(files, "web", naming.CDS_FILE)
    socket = clusters["api"]["transport_socket"]["typed_config"]["common_tls_context"]
    san = socket["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/zt/sa/api"}}]
    assert socket["tls_certificate_sds_secret_configs"][0]["name"] == naming.IDENTITY_SECRET
    (chain,) = inbound(files, "api")["filter_chains"]
    assert chain["transport_socket"]["typed_config"]["require_client_certificate"] is True
    manager = chain["filters"][0]["typed_config"]
    rbac = manager["http_filters"][0]["typed_config"]["rules"]
    assert [p["authenticated"]["principal_name"]["exact"] for policy in rbac["policies"].values()
            for p in policy["principals"]] == ["spiffe://cluster.local/ns/zt/sa/web"]
    # tcp: network RBAC before tcp_proxy, and the caller checked in the handshake too
    (db_chain,) = inbound(files, "db")["filter_chains"]
    assert [f["name"] for f in db_chain["filters"]] == ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]
    db_context = db_chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert db_context["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"] \
        == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/zt/sa/web"}}]
    # web is called by nobody: its RBAC allows no one
    web_rbac = inbound(files, "web")["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
    assert web_rbac["typed_config"]["rules"] == {"action": "ALLOW", "policies": {}}


def test_extra_callers_are_admitted_by_their_identity() -> None:
    files = files_of(spec(web={"extraCallers": [{"namespace": "ingress", "serviceAccount": "nginx"}]}))
    web_rbac = inbound(files, "web")["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
    (policy,) = web_rbac["typed_config"]["rules"]["policies"].values()
    assert policy["principals"] == [{"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/ingress/sa/nginx"}}}]


def test_permissive_takes_tls_and_plaintext_and_only_shadows_the_rules() -> None:
    files = files_of(spec(api={"mtls": "permissive"}))
    listener = inbound(files, "api")
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    assert listener["continue_on_listener_filters_timeout"] is True   # short or server-first plaintext
    tls_chain, plain_chain = listener["filter_chains"]
    assert tls_chain["filter_chain_match"] == {"transport_protocol": "tls"} and "transport_socket" in tls_chain
    assert plain_chain["filter_chain_match"] == {"transport_protocol": "raw_buffer"}
    assert "transport_socket" not in plain_chain
    for chain in (tls_chain, plain_chain):
        rbac = chain["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
        assert "rules" not in rbac and rbac["shadow_rules"]["action"] == "ALLOW"
        assert rbac["shadow_rules_stat_prefix"] == naming.AUTHZ_STAT_PREFIX
    assert "transport_socket" in resources(files, "web", naming.CDS_FILE)["api"]   # callers still send mTLS


def test_a_service_with_mtls_off_in_a_strict_mesh_is_called_in_plaintext() -> None:
    files = files_of(spec(api={"mtls": "off"}))
    assert "transport_socket" not in resources(files, "web", naming.CDS_FILE)["api"]
    assert "transport_socket" in resources(files, "web", naming.CDS_FILE)["db"]
    assert inbound(files, "api")["filter_chains"] == [{"filters": inbound(files, "api")["filter_chains"][0]["filters"]}]
    assert naming.envoy_path("api", "sds-identity.yaml") in files   # api still has an identity to call out with


def test_tls_dir_sets_where_every_sidecar_reads_its_certificate(tmp_path: Path) -> None:
    files = files_of(spec(), BuildOptions(config_dir="/srv/{service}/envoy", tls_dir="/srv/{service}/tls"))
    identity = resources(files, "api", "sds-identity.yaml")[naming.IDENTITY_SECRET]["tls_certificate"]
    assert identity["certificate_chain"] == {"filename": "/srv/api/tls/tls.crt"}
    assert identity["private_key"] == {"filename": "/srv/api/tls/tls.key"}
    assert identity["watched_directory"] == {"path": "/srv/api/tls"}
    trust = resources(files, "api", "sds-trust.yaml")[naming.TRUST_SECRET]["validation_context"]
    assert trust == {"trusted_ca": {"filename": "/srv/api/tls/ca.crt"}, "watched_directory": {"path": "/srv/api/tls"}}
    socket = resources(files, "web", naming.CDS_FILE)["api"]["transport_socket"]["typed_config"]
    source = socket["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["sds_config"]
    assert source["path_config_source"] == {"path": "/srv/web/envoy/sds-identity.yaml",
                                            "watched_directory": {"path": "/srv/web/envoy"}}
    # the same through the command line
    spec_file = tmp_path / "mesh.yaml"
    spec_file.write_text(yaml.safe_dump(spec()))
    result = subprocess.run([sys.executable, "-m", "meshc.cli", "build", str(spec_file), "-o", str(tmp_path / "out"),
                             "--tls-dir", "/srv/{service}/tls"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "out" / "envoy" / "db" / "sds-identity.yaml").read_text())
    assert written["resources"][0]["tls_certificate"]["certificate_chain"] == {"filename": "/srv/db/tls/tls.crt"}


def test_kubernetes_mounts_the_certificate_into_the_sidecar_only() -> None:
    files = files_of(spec())
    objects = list(yaml.safe_load_all(files[naming.kubernetes_path("api")]))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    (sidecar,) = pod["initContainers"]          # a native sidecar
    assert {"name": naming.SIDECAR_TLS_VOLUME, "mountPath": "/etc/meshc/tls", "readOnly": True} \
        in sidecar["volumeMounts"]
    assert all(m["name"] != naming.SIDECAR_TLS_VOLUME for m in app["volumeMounts"])
    assert {"name": naming.SIDECAR_TLS_VOLUME, "secret": {"secretName": "api-tls"}} in pod["volumes"]
    certificate = next(o for o in objects if o["kind"] == "Certificate")
    assert certificate["spec"]["secretName"] == "api-tls"
    assert certificate["spec"]["uris"] == ["spiffe://cluster.local/ns/zt/sa/api"]
    assert certificate["spec"]["privateKey"]["algorithm"] == "ECDSA" and certificate["spec"]["privateKey"]["size"] == 256
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    assert sorted(config_map["data"]) == sorted([*naming.ENVOY_FILES, *naming.SDS_FILES.values()])


def test_network_policy_admits_callers_and_scrapers_and_reaches_callees_and_dns() -> None:
    document = spec(web={"extraCallers": [{"namespace": "ingress", "serviceAccount": "nginx"}]})
    document["spec"]["security"]["monitoringNamespace"] = "monitoring"
    files = files_of(document)
    policy = next(o for o in yaml.safe_load_all(files[naming.kubernetes_path("web")]) if o["kind"] == "NetworkPolicy")
    callers, scrapers = policy["spec"]["ingress"]
    assert callers == {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}],
                       "ports": [{"port": 15006, "protocol": "TCP"}]}
    assert scrapers["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    dns, callees = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert callees["to"] == [{"podSelector": {"matchLabels": {"meshc.dev/service": "api"}}},
                             {"podSelector": {"matchLabels": {"meshc.dev/service": "db"}}}]
    api_policy = next(o for o in yaml.safe_load_all(files[naming.kubernetes_path("api")]) if o["kind"] == "NetworkPolicy")
    assert api_policy["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"meshc.dev/service": "web"}}}]
    document["spec"]["security"]["networkPolicies"] = False
    assert b"NetworkPolicy" not in b"".join(files_of(document).values())


def test_issuer_ref_names_another_issuer_and_meshc_emits_none() -> None:
    document = spec()
    document["spec"]["security"]["certificates"] = {"issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}
    files = files_of(document)
    assert b"cert-manager.io/v1" not in files[naming.NAMESPACE_PATH]
    certificate = next(o for o in yaml.safe_load_all(files[naming.kubernetes_path("api")]) if o["kind"] == "Certificate")
    assert certificate["spec"]["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp-ca"}


@pytest.mark.envoy
def test_envoy_accepts_every_zero_trust_variant(tmp_path: Path) -> None:
    """Permissive grpc with versions, strict tcp, extra callers, TLS origination (IPv4 and IPv6
    endpoints, a CA file): every sidecar validated by real Envoy."""
    ca_file = tmp_path / "corp.pem"
    ca_file.write_bytes(certs.new_authority().certificate_pem)
    source = SpecSource("mesh.yaml", ZERO_TRUST.replace("/etc/ssl/corp.pem", str(ca_file)).encode())
    tls_root = tmp_path / "tls"
    authority = certs.new_authority()
    mesh = mesh_of(source)
    for service in mesh.deployed_services:
        assert service.identity is not None
        cert, key = certs.issue(authority, service.identity.spiffe_id, certs.CA_VALIDITY)
        certs.write_workload(tls_root / service.name, cert, key, authority.certificate_pem)
    files = envoy_files(source, tmp_path / "config", tls_root=tls_root)
    for service in mesh.deployed_services:
        install(files, service.name, tmp_path / "config")
        path = write_bootstrap(static_bootstrap(files, service.name), tmp_path / f"{service.name}.json")
        result = validate_config(path)
        assert result.returncode == 0, f"{service.name}: {result.stderr}{result.stdout}"
