"""Workload settings as the Kubernetes emitter writes them: containers, environment, volumes,
security, init containers, probes, the sidecar's lifecycle, autoscalers, budgets and pod settings."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.version import Version

from meshc import defaults
from meshc.emit import kubernetes, naming
from meshc.load import SpecSource
from meshc.pipeline import compile
from meshc.quantities import parse_quantity
from meshc.resolve import ir
from tests.emit.kubernetes import schemas
from tests.emit.kubernetes.meshes import fake_sidecars, mesh_from_yaml
from tests.emit.kubernetes.test_schemas import NATIVE_SIDECARS, VERSIONS, for_version

Obj = dict[str, Any]

WORKLOADS = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: workloads}
spec:
  proxy:
    drainDuration: 8s
  analysis: {entryPoints: [web]}
  services:
  - name: web
    image: example.com/web:1
    port: 8080
    servicePort: 80
    command: [/app/server]
    args: [--verbose]
    env:
      LOG_LEVEL: info
      DB_PASSWORD: {secretKeyRef: {name: db, key: password}}
      FLAGS: {configMapKeyRef: {name: flags, key: all, optional: true}}
      POD_IP: {fieldRef: {fieldPath: status.podIP}}
    upstreams:
    - {service: cache, localPort: 6379, env: {REDIS_ADDR: "{address}", REDIS_HOST: "{host}", REDIS_PORT: "{port}"}}
    - {service: api, localPort: 9001}
    volumes:
    - {name: data, mountPath: /data, emptyDir: {sizeLimit: 1Gi}}
    - {name: conf, mountPath: /etc/conf, configMap: {name: web-conf, items: [{key: app.ini, path: app.ini}]}}
    - {name: certs, mountPath: /etc/certs, secret: {name: web-certs}}
    - {name: store, mountPath: /store, persistentVolumeClaim: {claimName: web-store}}
    - {name: scratch, mountPath: /tmp, emptyDir: {sizeLimit: 64Mi, medium: Memory}}
    securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, readOnlyRootFilesystem: false,
                      capabilities: {add: [NET_BIND_SERVICE]}}
    initContainers:
    - {name: migrate, image: example.com/migrate:1, command: [/migrate], env: {LOG_LEVEL: debug}}
    probes:
      liveness: off
      readiness: {httpGet: {path: /_healthz, headers: {Cookie: x}}, initialDelaySeconds: 5, successThreshold: 2}
      startup: {exec: {command: [/bin/check]}, failureThreshold: 30, successThreshold: 1}
    autoscaling: {minReplicas: 2, maxReplicas: 10, targetCPUUtilization: 70, targetMemoryUtilization: 80}
    pod:
      labels: {team: storefront}
      annotations: {example.com/owner: web-team}
      nodeSelector: {disk: ssd}
      tolerations: [{key: dedicated, operator: Equal, value: web, effect: NoSchedule}]
      affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:
                 [{matchExpressions: [{key: zone, operator: In, values: [a, b]}]}]}}}
      topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname}]
      priorityClassName: high
      imagePullSecrets: [regcred]
    versions:
    - {name: v1, weight: 90}
    - {name: v2, weight: 10, image: example.com/web:2, env: {FEATURE_X: "on", LOG_LEVEL: debug}, args: [--v2],
       command: [/app/server2]}
  - name: api
    image: example.com/api:1
    port: 9090
    protocol: grpc
    replicas: 3
    disruptionBudget: {minAvailable: "50%"}
    probes: {readiness: {grpc: {service: api}}, liveness: {tcpSocket: {port: 9091}}}
  - name: cache
    image: redis:7
    port: 6380
    protocol: tcp
    replicas: 2
    disruptionBudget: off
  - name: load
    image: example.com/load:1
    replicas: 2
    upstreams: [{service: web, localPort: 9000}]
    probes: {liveness: {exec: {command: [/bin/alive]}}}
"""


@pytest.fixture(scope="module")
def mesh() -> ir.Mesh:
    return mesh_from_yaml(WORKLOADS)


@pytest.fixture(scope="module")
def objects(mesh: ir.Mesh) -> dict[tuple[str, str], Obj]:
    documents = kubernetes.emit(mesh, fake_sidecars(mesh))
    return {(o["kind"], o["metadata"]["name"]): o for path, docs in documents.items()
            if path != naming.KUSTOMIZATION_PATH for o in docs}


def pod(objects: dict[tuple[str, str], Obj], name: str) -> Obj:
    spec: Obj = objects[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def app(objects: dict[tuple[str, str], Obj], name: str) -> Obj:
    (found,) = [c for c in pod(objects, name)["containers"] if c["name"] == naming.APP_CONTAINER]
    return found


def env(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_command_args_and_image_per_version(objects: dict[tuple[str, str], Obj]) -> None:
    v1, v2 = app(objects, "web-v1"), app(objects, "web-v2")
    assert (v1["image"], v1["command"], v1["args"]) == ("example.com/web:1", ["/app/server"], ["--verbose"])
    assert (v2["image"], v2["command"], v2["args"]) == ("example.com/web:2", ["/app/server2"], ["--v2"])


def test_environment_merges_upstreams_service_and_version(objects: dict[tuple[str, str], Obj]) -> None:
    v1, v2 = env(app(objects, "web-v1")), env(app(objects, "web-v2"))
    assert v1 == {
        "API_URL": "http://127.0.0.1:9001",
        "DB_PASSWORD": {"secretKeyRef": {"name": "db", "key": "password"}},
        "FLAGS": {"configMapKeyRef": {"name": "flags", "key": "all", "optional": True}},
        "LOG_LEVEL": "info",
        "POD_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
        "REDIS_ADDR": "127.0.0.1:6379", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379",
    }
    assert v2 == {**v1, "FEATURE_X": "on", "LOG_LEVEL": "debug"}
    names = [e["name"] for e in app(objects, "web-v2")["env"]]
    assert names == sorted(names)


def test_volumes_and_mounts(objects: dict[tuple[str, str], Obj]) -> None:
    volumes = {v["name"]: v for v in pod(objects, "web-v1")["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}
    assert volumes["conf"] == {"name": "conf", "configMap": {"name": "web-conf",
                                                             "items": [{"key": "app.ini", "path": "app.ini"}]}}
    assert volumes["certs"] == {"name": "certs", "secret": {"secretName": "web-certs"}}
    assert volumes["store"] == {"name": "store", "persistentVolumeClaim": {"claimName": "web-store"}}
    assert naming.APP_TMP_VOLUME not in volumes           # the service's own /tmp replaces meshc's
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "64Mi", "medium": "Memory"}
    mounts = {m["mountPath"]: m for m in app(objects, "web-v1")["volumeMounts"]}
    assert set(mounts) == {"/data", "/etc/conf", "/etc/certs", "/store", "/tmp"}
    assert mounts["/etc/conf"]["readOnly"] and mounts["/etc/certs"]["readOnly"] and "readOnly" not in mounts["/data"]


def test_security_follows_the_spec_and_stays_restricted(objects: dict[tuple[str, str], Obj]) -> None:
    context = pod(objects, "web-v1")["securityContext"]
    assert context == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert app(objects, "web-v1")["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert pod(objects, "api")["securityContext"]["runAsUser"] == 65532


def test_init_containers_run_after_the_native_sidecar_with_the_apps_setup(objects: dict[tuple[str, str], Obj]) -> None:
    init = pod(objects, "web-v2")["initContainers"]
    assert [c["name"] for c in init] == [naming.SIDECAR_CONTAINER, "migrate"]
    sidecar, migrate = init
    assert sidecar["restartPolicy"] == "Always" and sidecar["startupProbe"]["httpGet"]["path"] == "/ready"
    assert migrate["command"] == ["/migrate"] and "restartPolicy" not in migrate
    assert migrate["securityContext"] == app(objects, "web-v2")["securityContext"]
    assert migrate["volumeMounts"] == app(objects, "web-v2")["volumeMounts"]
    assert env(migrate) == {**env(app(objects, "web-v2")), "LOG_LEVEL": "debug"}
    assert [c["name"] for c in pod(objects, "web-v2")["containers"]] == [naming.APP_CONTAINER]


def test_probes_as_written_off_and_defaults(objects: dict[tuple[str, str], Obj]) -> None:
    web = app(objects, "web-v1")
    assert "livenessProbe" not in web
    assert web["readinessProbe"] == {"httpGet": {"path": "/_healthz", "port": 8080,
                                                 "httpHeaders": [{"name": "Cookie", "value": "x"}]},
                                     "initialDelaySeconds": 5, "successThreshold": 2}
    assert web["startupProbe"] == {"exec": {"command": ["/bin/check"]}, "failureThreshold": 30}
    api = app(objects, "api")
    assert api["readinessProbe"] == {"grpc": {"port": 9090, "service": "api"}}
    assert api["livenessProbe"] == {"tcpSocket": {"port": 9091}}
    cache = app(objects, "cache")        # nothing said: meshc's defaults
    assert cache["readinessProbe"]["tcpSocket"] == {"port": 6380} and "livenessProbe" in cache


def test_a_client_only_service_has_no_port_services_or_default_probes(objects: dict[tuple[str, str], Obj],
                                                                       mesh: ir.Mesh) -> None:
    load = app(objects, "load")
    assert "ports" not in load and "readinessProbe" not in load
    assert load["livenessProbe"] == {"exec": {"command": ["/bin/alive"]}}   # one it asked for
    assert not [key for key in objects if key[0] == "Service" and key[1].startswith("load")]
    assert mesh.service("load").service_port is None


def test_service_port_is_the_cluster_ip_port(objects: dict[tuple[str, str], Obj]) -> None:
    (port,) = objects[("Service", "web")]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, 15006)


def test_drain_and_grace_period(objects: dict[tuple[str, str], Obj]) -> None:
    assert app(objects, "web-v1")["lifecycle"] == {"preStop": {"sleep": {"seconds": 8}}}
    assert pod(objects, "web-v1")["terminationGracePeriodSeconds"] == 8 + defaults.APP_SHUTDOWN_S


def test_ordinary_sidecar_for_older_clusters_waits_out_the_drain() -> None:
    mesh = mesh_from_yaml(WORKLOADS.replace("    drainDuration: 8s\n", "    drainDuration: 8s\n    nativeSidecar: false\n"))
    documents = kubernetes.emit(mesh, fake_sidecars(mesh))
    deployment = next(o for o in documents[naming.kubernetes_path("web")] if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == [naming.APP_CONTAINER, naming.SIDECAR_CONTAINER]
    assert [c["name"] for c in spec["initContainers"]] == ["migrate"]
    sidecar = spec["containers"][1]
    assert "restartPolicy" not in sidecar and "startupProbe" not in sidecar
    assert sidecar["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "8"]}}}
    assert "lifecycle" not in spec["containers"][0]     # the sleep hook needs Kubernetes 1.29+


def test_autoscaler_and_budgets(objects: dict[tuple[str, str], Obj]) -> None:
    assert "replicas" not in objects[("Deployment", "web-v1")]["spec"]
    hpa = objects[("HorizontalPodAutoscaler", "web-v2")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-v2"}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    assert objects[("PodDisruptionBudget", "web-v1")]["spec"]["maxUnavailable"] == 1   # minReplicas 2
    assert objects[("PodDisruptionBudget", "api")]["spec"] == {
        "minAvailable": "50%", "selector": {"matchLabels": {naming.SERVICE_LABEL: "api", naming.VERSION_LABEL: "default"}}}
    assert ("PodDisruptionBudget", "cache") not in objects                               # off
    assert objects[("PodDisruptionBudget", "load")]["spec"]["maxUnavailable"] == 1        # 2 replicas
    assert objects[("Deployment", "api")]["spec"]["replicas"] == 3


def test_pod_settings(objects: dict[tuple[str, str], Obj]) -> None:
    template = objects[("Deployment", "web-v1")]["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "storefront"
    assert template["metadata"]["annotations"]["example.com/owner"] == "web-team"
    spec = template["spec"]
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"] == [{"key": "zone", "operator": "In", "values": ["a", "b"]}]
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": {naming.SERVICE_LABEL: "web", naming.VERSION_LABEL: "v1"}}
    assert spec["priorityClassName"] == "high" and spec["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_workload_object_is_schema_valid(version: str) -> None:
    compiled = compile(SpecSource("mesh.yaml", WORKLOADS.encode()))
    assert compiled.bundle is not None
    problems = [p for obj in compiled.bundle.kubernetes_objects() for p in schemas.errors(obj, version)]
    assert problems == []


@pytest.mark.parametrize("version", [v for v in schemas.bundled_versions() if Version(v) < Version(NATIVE_SIDECARS)])
def test_ordinary_sidecars_are_schema_valid_before_native_sidecars(version: str) -> None:
    spec = for_version(WORKLOADS, version)
    assert "nativeSidecar: false" in spec
    compiled = compile(SpecSource("mesh.yaml", spec.encode()))
    assert compiled.bundle is not None
    problems = [p for obj in compiled.bundle.kubernetes_objects() for p in schemas.errors(obj, version)]
    assert problems == []


def test_defaults_fit_their_limits() -> None:
    """The checks skip requests-vs-limits for services on the built-in defaults alone."""
    for base in (defaults.APP_RESOURCES, defaults.PROXY_RESOURCES):
        for resource in ("cpu", "memory"):
            assert parse_quantity(base[f"{resource}_request"]) <= parse_quantity(base[f"{resource}_limit"])


LOW_PORTS = """
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: low-ports}
spec:
  analysis: {entryPoints: [web, edge]}
  services:
  - name: web
    image: example.com/web:1
    port: 80
  - name: edge
    image: example.com/edge:1
    port: 8080
    upstreams: [{service: web, localPort: 81}]
  - name: api
    image: example.com/api:1
    port: 8081
  - name: load
    image: example.com/load:1
    upstreams: [{service: api, localPort: 9001}]
"""


@pytest.mark.parametrize("version", schemas.oldest_and_newest())
def test_a_pod_binding_a_port_below_1024_may_do_so_without_a_capability(version: str) -> None:
    """Every container drops NET_BIND_SERVICE: a pod whose app listens on a low port, or whose
    sidecar does for an upstream, gets the one safe sysctl that lets a non-root user bind it."""
    mesh = mesh_from_yaml(for_version(LOW_PORTS, version))
    low_ports = {(o["kind"], o["metadata"]["name"]): o
                 for path, docs in kubernetes.emit(mesh, fake_sidecars(mesh)).items()
                 if path != naming.KUSTOMIZATION_PATH for o in docs}
    sysctl = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
    assert pod(low_ports, "web")["securityContext"]["sysctls"] == [sysctl]      # the app's port
    assert pod(low_ports, "edge")["securityContext"]["sysctls"] == [sysctl]     # an upstream's local port
    for name in ("api", "load"):
        assert "sysctls" not in pod(low_ports, name)["securityContext"]
    assert app(low_ports, "web")["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for name in ("web", "edge"):
        assert schemas.errors(low_ports[("Deployment", name)], version) == []
