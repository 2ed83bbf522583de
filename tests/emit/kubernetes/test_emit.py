"""The Kubernetes emitter, read as a cluster would read it: layout, order, labels, hashes, pods."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from meshc import kinds, render
from meshc.emit import kubernetes, naming
from meshc.resolve import ir
from tests.emit.kubernetes.meshes import EXAMPLES, example_mesh, fake_sidecars, mesh_from_yaml

Obj = dict[str, Any]

PROTOCOLS = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: protocols}
spec:
  namespace: proto-ns
  proxy:
    inboundPort: 15001
    statsPort: 15020
    resources: {requests: {cpu: 20m}, limits: {memory: 100Mi}}
  analysis: {entryPoints: [edge]}
  services:
  - name: edge
    image: example.com/edge:1
    port: 8080
    env: {LOG_LEVEL: debug, RAW_URL: "http://override:1"}
    healthCheck: {path: /livez, interval: 1500ms, timeout: 300ms, healthyThreshold: 1, unhealthyThreshold: 4}
    upstreams:
    - {service: h2, localPort: 7001}
    - {service: rpc, localPort: 7002}
    - {service: raw, localPort: 7003}
  - name: h2
    image: example.com/h2:1
    port: 8081
    protocol: http2
    healthCheck: {path: /h2}
  - name: rpc
    image: example.com/rpc:1
    port: 8082
    protocol: grpc
    healthCheck: {path: /grpc.health.v1.Health/Check}
    resources: {requests: {cpu: 300m, memory: 1Gi}, limits: {cpu: "3", memory: 2Gi}}
  - name: raw
    image: example.com/raw:1
    port: 8083
    protocol: tcp
    healthCheck: {path: /ignored}
    versions:
    - {name: blue, weight: 50, replicas: 0}
    - {name: green, weight: 50, resources: {limits: {cpu: 250m}}}
"""


def emitted(mesh: ir.Mesh, **overrides: bytes) -> dict[str, list[Obj]]:
    return kubernetes.emit(mesh, fake_sidecars(mesh, **overrides))


def is_gateway(obj: Obj) -> bool:
    """A gateway's objects (tests/emit/kubernetes/test_gateway.py) are not any service's."""
    return naming.GATEWAY_LABEL in obj["metadata"]["labels"]


def objects_of(documents: dict[str, list[Obj]]) -> list[Obj]:
    return [obj for path, docs in documents.items() if path != naming.KUSTOMIZATION_PATH for obj in docs]


def find(documents: dict[str, list[Obj]], kind: str, name: str) -> Obj:
    matches = [o for o in objects_of(documents) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, (kind, name, len(matches))
    return matches[0]


def all_containers(deployment: Obj) -> list[Obj]:
    """The app, the sidecar (a native sidecar is an init container) and any init containers."""
    pod = deployment["spec"]["template"]["spec"]
    return [*pod.get("initContainers", ()), *pod["containers"]]


def container(deployment: Obj, name: str) -> Obj:
    (found,) = [c for c in all_containers(deployment) if c["name"] == name]
    return found


def takes_calls(mesh: ir.Mesh) -> list[ir.Service]:
    """Deployed services with a port: the ones with Services (a client-only service has none)."""
    return [s for s in mesh.deployed_services if s.port is not None]


@pytest.fixture(scope="module")
def protocols() -> ir.Mesh:
    return mesh_from_yaml(PROTOCOLS)


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request: pytest.FixtureRequest) -> ir.Mesh:
    return example_mesh(request.param)


# --- layout and order ------------------------------------------------------------------------

def test_one_file_per_deployed_service_plus_namespace_and_kustomization(example: ir.Mesh) -> None:
    documents = emitted(example)
    expected = [naming.NAMESPACE_PATH, *(naming.kubernetes_path(s.name) for s in example.deployed_services),
                *(naming.kubernetes_path(naming.gateway_name(g.name)) for g in example.gateways),
                naming.KUSTOMIZATION_PATH]
    assert list(documents) == expected
    external = [s for s in example.services if not s.deployed]
    assert all(naming.kubernetes_path(s.name) not in documents for s in external)


def test_each_service_file_holds_its_objects_in_apply_order(example: ir.Mesh) -> None:
    documents = emitted(example)
    for service in example.deployed_services:
        objs = documents[naming.kubernetes_path(service.name)]
        ranks = [kinds.kind_rank(o["kind"]) for o in objs]
        assert ranks == sorted(ranks)
        versions = len(service.versions)
        services = 0 if service.port is None else 1 + versions   # a client-only service takes no calls
        zero_trust = {"Certificate": 1, "NetworkPolicy": 1} if service.identity else {}
        expected = {"ServiceAccount": 1, "ConfigMap": 1, "Service": services, "Deployment": versions,
                    "HorizontalPodAutoscaler": sum(1 for v in service.versions if v.autoscaling),
                    "PodDisruptionBudget": sum(1 for v in service.versions if v.disruption_budget), **zero_trust}
        assert Counter(o["kind"] for o in objs) == {kind: n for kind, n in expected.items() if n}
        assert all(o["metadata"]["namespace"] == example.namespace for o in objs)
        assert all(o["apiVersion"] == kinds.API_VERSIONS[o["kind"]] for o in objs)


def test_namespace_file_holds_the_namespace_and_the_mesh_issuer(example: ir.Mesh) -> None:
    namespace, *rest = emitted(example)[naming.NAMESPACE_PATH]
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == example.namespace
    assert "namespace" not in namespace["metadata"]
    assert example.security is not None
    expected = ["Issuer"] if example.security.enabled and example.security.certificates.emit_issuer else []
    assert [o["kind"] for o in rest] == expected


def test_kustomization_lists_every_generated_file_relative_to_itself(example: ir.Mesh) -> None:
    documents = emitted(example)
    (kustomization,) = documents[naming.KUSTOMIZATION_PATH]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = ["kubernetes/" + name for name in kustomization["resources"]]
    assert listed == [p for p in documents if p != naming.KUSTOMIZATION_PATH]


def test_object_names_are_unique_per_kind(example: ir.Mesh) -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects_of(emitted(example))]
    assert len(keys) == len(set(keys))


# --- labels and hashes -----------------------------------------------------------------------

def test_every_object_carries_the_mesh_labels_and_a_correct_config_hash(example: ir.Mesh) -> None:
    for obj in objects_of(emitted(example)):
        labels = obj["metadata"]["labels"]
        assert labels[naming.MANAGED_BY_LABEL] == "meshc" and labels[naming.MESH_LABEL] == example.name
        annotations = obj["metadata"]["annotations"]
        assert list(annotations) == [naming.CONFIG_HASH_ANNOTATION]
        without = copy.deepcopy(obj)
        del without["metadata"]["annotations"]
        assert annotations[naming.CONFIG_HASH_ANNOTATION] == render.content_hash(without)


def test_service_and_version_labels(example: ir.Mesh) -> None:
    documents = emitted(example)
    for service in example.deployed_services:
        for obj in documents[naming.kubernetes_path(service.name)]:
            labels = obj["metadata"]["labels"]
            assert labels[naming.SERVICE_LABEL] == labels[naming.APP_NAME_LABEL] == service.name
            per_version = obj["kind"] in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget") or \
                obj["metadata"]["name"] != service.name and obj["kind"] == "Service"
            assert (naming.VERSION_LABEL in labels) == per_version, obj["metadata"]["name"]
            if per_version:
                assert labels[naming.VERSION_LABEL] == labels[naming.APP_VERSION_LABEL]


def test_a_change_to_one_service_leaves_the_others_objects_byte_identical() -> None:
    before = example_mesh("shop")
    catalog = before.service("catalog")
    bumped = ir.Version(**{**_fields(catalog.versions[0]), "image": "ghcr.io/acme/catalog:1.0.1"})
    after = _replace_service(before, ir.Service(**{**_fields(catalog), "versions": (bumped, catalog.versions[1])}))
    old, new = emitted(before), emitted(after)
    assert old[naming.kubernetes_path("frontend")] == new[naming.kubernetes_path("frontend")]
    assert old[naming.NAMESPACE_PATH] == new[naming.NAMESPACE_PATH]
    changed = [(o["kind"], o["metadata"]["name"]) for o, n in zip(old[naming.kubernetes_path("catalog")],
                                                                 new[naming.kubernetes_path("catalog")]) if o != n]
    assert changed == [("Deployment", "catalog-v1")]
    hash_of = lambda docs: find(docs, "Deployment", "catalog-v1")["metadata"]["annotations"]  # noqa: E731
    assert hash_of(old) != hash_of(new)


def test_cds_and_lds_changes_reach_the_config_map_but_never_roll_pods() -> None:
    mesh = example_mesh("canary")
    base, cds, lds = emitted(mesh), emitted(mesh, cds=b'{"cds": 2}\n'), emitted(mesh, lds=b'{"lds": 2}\n')
    for changed in (cds, lds):
        for service in mesh.deployed_services:
            for old, new in zip(base[naming.kubernetes_path(service.name)], changed[naming.kubernetes_path(service.name)]):
                assert (old == new) == (old["kind"] != "ConfigMap"), (old["kind"], old["metadata"]["name"])


def test_a_bootstrap_change_rolls_the_pods() -> None:
    mesh = example_mesh("canary")
    old, new = emitted(mesh), emitted(mesh, bootstrap=b'{"bootstrap": 2}\n')
    for deployment in (o for o in objects_of(old) if o["kind"] == "Deployment"):
        other = find(new, "Deployment", deployment["metadata"]["name"])
        before = deployment["spec"]["template"]["metadata"]["annotations"][naming.BOOTSTRAP_HASH_ANNOTATION]
        after = other["spec"]["template"]["metadata"]["annotations"][naming.BOOTSTRAP_HASH_ANNOTATION]
        assert before != after
        assert after == render.sha256(b'{"bootstrap": 2}\n')[:16]


# --- selection and traffic -------------------------------------------------------------------

def test_selectors_are_stable_and_pick_exactly_the_right_pods(example: ir.Mesh) -> None:
    objs = objects_of(emitted(example))
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in objs if d["kind"] == "Deployment"}
    for deployment in (o for o in objs if o["kind"] == "Deployment" and not is_gateway(o)):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(selector) == {naming.SERVICE_LABEL, naming.VERSION_LABEL}
        assert [name for name, labels in pods.items() if selector.items() <= labels.items()] == \
            [deployment["metadata"]["name"]]
    for service in takes_calls(example):
        cluster_ip = find(emitted(example), "Service", service.name)
        matched = {name for name, labels in pods.items() if cluster_ip["spec"]["selector"].items() <= labels.items()}
        assert matched == {naming.workload_name(service.name, v) for v in service.versions}
        for version in service.versions:
            headless = find(emitted(example), "Service", naming.headless_service_name(service.name, version))
            matched = {name for name, labels in pods.items() if headless["spec"]["selector"].items() <= labels.items()}
            assert matched == {naming.workload_name(service.name, version)}


def test_cluster_service_exposes_the_app_port_through_the_sidecar(example: ir.Mesh) -> None:
    documents = emitted(example)
    for service in takes_calls(example):
        spec = find(documents, "Service", service.name)["spec"]
        assert spec["type"] == "ClusterIP"
        (port,) = spec["ports"]
        assert port["port"] == service.service_port and port["name"] == service.protocol.value
        assert port["targetPort"] == example.proxy.inbound_port
        for version in service.versions:
            deployment = find(documents, "Deployment", naming.workload_name(service.name, version))
            sidecar_ports = {p["containerPort"] for p in container(deployment, naming.SIDECAR_CONTAINER)["ports"]}
            assert port["targetPort"] in sidecar_ports


def test_headless_service_per_version_publishes_ready_pods_on_the_inbound_port(example: ir.Mesh) -> None:
    documents = emitted(example)
    for service in takes_calls(example):
        for version in service.versions:
            spec = find(documents, "Service", naming.headless_service_name(service.name, version))["spec"]
            assert spec["clusterIP"] == "None" and spec["publishNotReadyAddresses"] is False
            assert [p["port"] for p in spec["ports"]] == [example.proxy.inbound_port]


def test_app_protocol_per_protocol(protocols: ir.Mesh) -> None:
    documents = emitted(protocols)
    app_protocols = {name: find(documents, "Service", name)["spec"]["ports"][0]["appProtocol"]
                     for name in ("edge", "h2", "rpc", "raw")}
    assert app_protocols == {"edge": "http", "h2": "kubernetes.io/h2c", "rpc": "grpc", "raw": "tcp"}


# --- pods ------------------------------------------------------------------------------------

def test_pods_are_locked_down(example: ir.Mesh) -> None:
    """Pod Security `restricted`; the app's root file system is read-only unless its service says not."""
    for deployment in (o for o in objects_of(emitted(example)) if o["kind"] == "Deployment"):
        owner = deployment["metadata"]["labels"].get(naming.SERVICE_LABEL)   # none on a gateway's
        writable_root = owner is not None and not example.service(owner).security.read_only_root_filesystem
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in all_containers(deployment):
            read_only = c["name"] == naming.SIDECAR_CONTAINER or not writable_root
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": read_only,
                                            "capabilities": {"drop": ["ALL"]}}
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), c["name"]


def test_service_accounts_mount_no_token(example: ir.Mesh) -> None:
    documents = emitted(example)
    for service in example.deployed_services:
        account = find(documents, "ServiceAccount", naming.service_account_name(service.name))
        assert account["automountServiceAccountToken"] is False
        for version in service.versions:
            pod = find(documents, "Deployment", naming.workload_name(service.name, version))["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_sidecar_runs_the_bootstrap_from_the_mounted_config_map(example: ir.Mesh) -> None:
    documents = emitted(example)
    sidecars = fake_sidecars(example)
    for service in example.deployed_services:
        config_map = find(documents, "ConfigMap", naming.config_map_name(service.name))
        assert config_map["data"] == {name: data.decode() for name, data in sidecars[service.name].items()}
        for version in service.versions:
            deployment = find(documents, "Deployment", naming.workload_name(service.name, version))
            pod = deployment["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            envoy = container(deployment, naming.SIDECAR_CONTAINER)
            assert envoy["image"] == example.proxy.image
            assert envoy["args"] == ["-c", f"{naming.DEFAULT_CONFIG_DIR}/bootstrap.yaml"]
            (config_mount,) = [m for m in envoy["volumeMounts"] if m["mountPath"] == naming.DEFAULT_CONFIG_DIR]
            assert config_mount["readOnly"] is True and "subPath" not in config_mount
            assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
            for c in all_containers(deployment):
                assert {m["name"] for m in c["volumeMounts"]} <= set(volumes)


def test_ports_probes_and_scrape_annotations_agree(example: ir.Mesh) -> None:
    proxy = example.proxy
    for deployment in (o for o in objects_of(emitted(example)) if o["kind"] == "Deployment" and not is_gateway(o)):
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(proxy.stats_port)
        assert annotations["prometheus.io/path"] == "/stats/prometheus"
        envoy = container(deployment, naming.SIDECAR_CONTAINER)
        assert {p["name"]: p["containerPort"] for p in envoy["ports"]} == {
            naming.SIDECAR_INBOUND_PORT_NAME: proxy.inbound_port, naming.SIDECAR_STATS_PORT_NAME: proxy.stats_port}
        assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": proxy.stats_port}
        ports = [p for c in all_containers(deployment) for p in c.get("ports", ())]
        assert proxy.admin_port not in {p["containerPort"] for p in ports}
        names = [p["name"] for p in ports]
        assert len(names) == len(set(names)) and all(len(n) <= 15 for n in names)
        for c in all_containers(deployment):
            for probe in ("livenessProbe", "startupProbe"):   # Kubernetes demands 1 for these
                assert "successThreshold" not in c.get(probe, {})


def test_readiness_follows_the_health_check_per_protocol(protocols: ir.Mesh) -> None:
    documents = emitted(protocols)
    app = lambda name: container(find(documents, "Deployment", name), naming.APP_CONTAINER)  # noqa: E731
    edge = app("edge")["readinessProbe"]
    assert edge == {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 2, "timeoutSeconds": 1,
                    "successThreshold": 1, "failureThreshold": 4}
    assert app("h2")["readinessProbe"]["httpGet"] == {"path": "/h2", "port": 8081}
    assert app("rpc")["readinessProbe"]["grpc"] == {"port": 8082}
    for version in ("raw-blue", "raw-green"):
        assert app(version)["readinessProbe"]["tcpSocket"] == {"port": 8083}
    for name in ("edge", "h2", "rpc", "raw-blue"):
        assert set(app(name)["livenessProbe"]) >= {"tcpSocket", "initialDelaySeconds", "periodSeconds"}


def test_without_a_health_check_readiness_waits_for_the_port() -> None:
    documents = emitted(example_mesh("shop"))
    probe = container(find(documents, "Deployment", "catalog-v1"), naming.APP_CONTAINER)["readinessProbe"]
    assert probe["tcpSocket"] == {"port": 9090}


def test_env_tells_the_app_each_upstream_url_and_own_env_wins(protocols: ir.Mesh) -> None:
    env = container(find(emitted(protocols), "Deployment", "edge"), naming.APP_CONTAINER)["env"]
    assert env == [
        {"name": "H2_URL", "value": "http://127.0.0.1:7001"},
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "RAW_URL", "value": "http://override:1"},
        {"name": "RPC_URL", "value": "http://127.0.0.1:7002"},
    ]


def test_tcp_upstreams_get_a_tcp_url() -> None:
    mesh = mesh_from_yaml(PROTOCOLS.replace('RAW_URL: "http://override:1"', "OTHER: x"))
    env = container(find(emitted(mesh), "Deployment", "edge"), naming.APP_CONTAINER)["env"]
    assert {"name": "RAW_URL", "value": "tcp://127.0.0.1:7003"} in env


def test_upstream_env_names_are_derived_from_service_names() -> None:
    env = container(find(emitted(example_mesh("external")), "Deployment", "invoices"), naming.APP_CONTAINER)["env"]
    assert env == [{"name": "CARD_PROCESSOR_URL", "value": "http://127.0.0.1:9100"},
                   {"name": "LEDGER_URL", "value": "http://127.0.0.1:9101"}]


def test_no_env_list_when_there_is_nothing_to_say() -> None:
    assert "env" not in container(find(emitted(example_mesh("shop")), "Deployment", "catalog-v1"), naming.APP_CONTAINER)


def test_resources_come_from_the_spec_with_defaults_filling_the_rest(protocols: ir.Mesh) -> None:
    documents = emitted(protocols)
    app = lambda name: container(find(documents, "Deployment", name), naming.APP_CONTAINER)  # noqa: E731
    assert app("rpc")["resources"] == {"requests": {"cpu": "300m", "memory": "1Gi"}, "limits": {"cpu": "3", "memory": "2Gi"}}
    assert app("edge")["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                        "limits": {"cpu": "1", "memory": "512Mi"}}
    assert app("raw-green")["resources"]["limits"]["cpu"] == "250m"
    sidecar = container(find(documents, "Deployment", "edge"), naming.SIDECAR_CONTAINER)
    assert sidecar["resources"] == {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "100Mi"}}


def test_replicas_and_images_per_version() -> None:
    documents = emitted(example_mesh("canary"))
    expected = {"checkout-stable": (4, "ghcr.io/acme/checkout:4.2.0"), "checkout-canary": (1, "ghcr.io/acme/checkout:4.3.0-rc.1"),
                "checkout-next": (1, "ghcr.io/acme/checkout:5.0.0-beta.2"), "web": (3, "ghcr.io/acme/web:3.1.0"),
                "inventory": (2, "ghcr.io/acme/inventory:2.0.4")}
    for name, (replicas, image) in expected.items():
        deployment = find(documents, "Deployment", name)
        assert (deployment["spec"]["replicas"], container(deployment, naming.APP_CONTAINER)["image"]) == (replicas, image)


def test_zero_replicas_is_kept(protocols: ir.Mesh) -> None:
    assert find(emitted(protocols), "Deployment", "raw-blue")["spec"]["replicas"] == 0


def test_nothing_time_or_revision_dependent_is_emitted(example: ir.Mesh) -> None:
    text = render.documents(objects_of(emitted(example))).decode()
    for marker in ("creationTimestamp", "resourceVersion", "revision", "generation", "uid"):
        assert f'"{marker}"' not in text


def _fields(node: object) -> dict[str, Any]:
    return {name: getattr(node, name) for name in node.__slots__}  # type: ignore[attr-defined]


def _replace_service(mesh: ir.Mesh, service: ir.Service) -> ir.Mesh:
    services = tuple(service if s.name == service.name else s for s in mesh.services)
    return ir.Mesh(**{**_fields(mesh), "services": services})
