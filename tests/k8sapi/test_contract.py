"""Contract tests: what meshc relies on from the API server, checked through the official client.

They run against the double by default and against a real cluster when MESHC_TEST_KUBECONFIG is set
(tests that need fault injection or the request log skip there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from tests.k8sapi import fixtures
from tests.k8sapi.fixtures import KubeAPIHandle

kube_api = fixtures.kube_api  # the fixture, so this module also runs without tests/conftest.py

Manifest = dict[str, Any]


@pytest.fixture
def dyn(kube_api: KubeAPIHandle) -> DynamicClient:
    return kube_api.dynamic()


@pytest.fixture
def core(kube_api: KubeAPIHandle) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api.api_client())


@pytest.fixture
def ns(kube_api: KubeAPIHandle) -> str:
    return kube_api.create_namespace()


@pytest.fixture
def configmaps(dyn: DynamicClient) -> Resource:
    return dyn.resources.get(api_version="v1", kind="ConfigMap")


@pytest.fixture
def deployments(dyn: DynamicClient) -> Resource:
    return dyn.resources.get(api_version="apps/v1", kind="Deployment")


def configmap(name: str, namespace: str, data: dict[str, str], labels: dict[str, str] | None = None) -> Manifest:
    metadata: Manifest = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def deployment(name: str, namespace: str, replicas: int = 1, labels: dict[str, str] | None = None,
               env: dict[str, str] | None = None) -> Manifest:
    container: Manifest = {"name": "app", "image": "registry.example/app:1.0"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def failure(call: Callable[[], object]) -> tuple[int, Manifest]:
    """The HTTP status and the decoded Status body of a call that must fail."""
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)


def managers(obj: Any) -> dict[tuple[str, str], Manifest]:
    entries = obj["metadata"]["managedFields"] if isinstance(obj, dict) else obj.to_dict()["metadata"]["managedFields"]
    return {(entry["manager"], entry["operation"]): entry["fieldsV1"] for entry in entries}


# ---- discovery --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("api_version", "kind", "namespaced", "singular"), [
    ("v1", "Namespace", False, "namespace"),
    ("v1", "ServiceAccount", True, "serviceaccount"),
    ("v1", "ConfigMap", True, "configmap"),
    ("v1", "Service", True, "service"),
    ("v1", "Secret", True, "secret"),
    ("apps/v1", "Deployment", True, "deployment"),
    ("rbac.authorization.k8s.io/v1", "Role", True, "role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", True, "rolebinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", False, "clusterrole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", False, "clusterrolebinding"),
])
def test_discovery_describes_each_kind(dyn: DynamicClient, api_version: str, kind: str, namespaced: bool,
                                       singular: str) -> None:
    resource = dyn.resources.get(api_version=api_version, kind=kind)
    assert resource.namespaced is namespaced
    assert resource.singular_name == singular
    assert {"create", "get", "list", "patch", "update", "delete"} <= set(resource.verbs)


def test_version_and_api_groups(kube_api: KubeAPIHandle) -> None:
    api_client = kube_api.api_client()
    assert client.VersionApi(api_client).get_code().git_version.startswith("v1.")
    groups = {group.name for group in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "rbac.authorization.k8s.io"} <= groups
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]


# ---- CRUD and errors --------------------------------------------------------------------------------

def test_create_get_list_replace_delete(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, configmap("settings", ns, {"mode": "a"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert core.read_namespaced_config_map("settings", ns).data == {"mode": "a"}
    assert "settings" in {item.metadata.name for item in core.list_namespaced_config_map(ns).items}

    created.data = {"mode": "b"}
    replaced = core.replace_namespaced_config_map("settings", ns, created)
    assert replaced.data == {"mode": "b"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    core.delete_namespaced_config_map("settings", ns)
    status, body = failure(lambda: core.read_namespaced_config_map("settings", ns))
    assert (status, body["reason"]) == (404, "NotFound")


def test_status_errors_are_shaped_like_the_server(core: client.CoreV1Api, ns: str) -> None:
    status, body = failure(lambda: core.read_namespaced_config_map("absent", ns))
    assert status == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'configmaps "absent" not found', "reason": "NotFound",
                    "details": {"name": "absent", "kind": "configmaps"}, "code": 404}


def test_creating_twice_is_already_exists(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("twice", ns, {}))
    status, body = failure(lambda: core.create_namespaced_config_map(ns, configmap("twice", ns, {})))
    assert (status, body["reason"], body["details"]["name"]) == (409, "AlreadyExists", "twice")


def test_creating_in_a_missing_namespace_is_not_found(core: client.CoreV1Api) -> None:
    missing = "meshc-no-such-namespace"
    status, body = failure(lambda: core.create_namespaced_config_map(missing, configmap("x", missing, {})))
    assert (status, body["reason"]) == (404, "NotFound")
    assert body["details"] == {"name": missing, "kind": "namespaces"}


def test_stale_resource_version_is_a_conflict(core: client.CoreV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(ns, configmap("raced", ns, {"v": "1"}))
    fresh = core.read_namespaced_config_map("raced", ns)
    fresh.data = {"v": "2"}
    core.replace_namespaced_config_map("raced", ns, fresh)
    first.data = {"v": "3"}
    status, body = failure(lambda: core.replace_namespaced_config_map("raced", ns, first))
    assert (status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("raced", ns).data == {"v": "2"}


def test_invalid_name_is_unprocessable(core: client.CoreV1Api, ns: str) -> None:
    status, body = failure(lambda: core.create_namespaced_config_map(ns, configmap("Bad_Name", ns, {})))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_body_namespace_must_match_the_url(core: client.CoreV1Api, ns: str) -> None:
    status, body = failure(lambda: core.create_namespaced_config_map(ns, configmap("x", "elsewhere", {})))
    assert (status, body["reason"]) == (400, "BadRequest")


def test_merge_patch_changes_only_the_given_fields(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    dyn.create(configmaps, body=configmap("patched", ns, {"keep": "1", "drop": "2"}))
    patched = dyn.patch(configmaps, body={"metadata": {"name": "patched"}, "data": {"drop": None, "new": "3"}},
                        namespace=ns, content_type="application/merge-patch+json")
    assert patched.data.to_dict() == {"keep": "1", "new": "3"}


def test_strategic_merge_patch_merges_containers_by_name(dyn: DynamicClient, deployments: Resource,
                                                         ns: str) -> None:
    dyn.create(deployments, body=deployment("web", ns, env={"A": "1"}))
    patch = {"metadata": {"name": "web"},
             "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/app:2.0"}]}}}}
    patched = dyn.patch(deployments, body=patch, namespace=ns)
    container = patched.to_dict()["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["env"]) == ("registry.example/app:2.0", [{"name": "A", "value": "1"}])


def test_apply_accepts_a_yaml_body(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n  namespace: {ns}\ndata:\n  k: v\n"
    dyn.request("patch", configmaps.path(name="from-yaml", namespace=ns), body=manifest,
                content_type="application/apply-patch+yaml", field_manager="meshc")
    assert dyn.get(configmaps, name="from-yaml", namespace=ns).data.to_dict() == {"k": "v"}


def test_service_keeps_its_allocated_cluster_ip(dyn: DynamicClient, ns: str) -> None:
    services = dyn.resources.get(api_version="v1", kind="Service")
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    first = dyn.server_side_apply(services, body=manifest, field_manager="meshc")
    assert first.spec.clusterIP and first.spec.ports[0].targetPort == 80
    again = dyn.server_side_apply(services, body=manifest, field_manager="meshc")
    assert (again.spec.clusterIP, again.metadata.resourceVersion) == (first.spec.clusterIP,
                                                                      first.metadata.resourceVersion)


def test_delete_collection_by_label(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    for name, group in (("one", "doomed"), ("two", "doomed"), ("three", "kept")):
        dyn.create(configmaps, body=configmap(name, ns, {}, {"group": group}))
    dyn.delete(configmaps, namespace=ns, label_selector="group=doomed")
    left = dyn.get(configmaps, namespace=ns, label_selector="group")
    assert [item.metadata.name for item in left.items] == ["three"]


def test_list_pages_with_limit_and_continue(core: client.CoreV1Api, ns: str) -> None:
    names = [f"page-{n}" for n in range(5)]
    for name in names:
        core.create_namespaced_config_map(ns, configmap(name, ns, {}, {"suite": "paging"}))
    seen: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="suite=paging", limit=2, _continue=token)
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == names


# ---- label and field selectors ----------------------------------------------------------------------

@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", {"a", "c"}),
    ("app==web", {"a", "c"}),
    ("app!=web", {"b"}),
    ("tier in (front,back)", {"a", "b"}),
    ("tier notin (front)", {"b", "c"}),
    ("tier", {"a", "b"}),
    ("!tier", {"c"}),
    ("app=web,tier=front", {"a"}),
])
def test_label_selectors(core: client.CoreV1Api, ns: str, selector: str, expected: set[str]) -> None:
    for name, labels in (("a", {"app": "web", "tier": "front"}), ("b", {"app": "api", "tier": "back"}),
                         ("c", {"app": "web"})):
        core.create_namespaced_config_map(ns, configmap(name, ns, {}, {"suite": "selectors", **labels}))
    found = core.list_namespaced_config_map(ns, label_selector=f"suite=selectors,{selector}")
    assert {item.metadata.name for item in found.items} == expected


def test_field_selector_and_all_namespaces_list(kube_api: KubeAPIHandle, core: client.CoreV1Api, ns: str) -> None:
    other = kube_api.create_namespace()
    for namespace in (ns, other):
        core.create_namespaced_config_map(namespace, configmap("shared", namespace, {}, {"suite": "all-ns"}))
    everywhere = core.list_config_map_for_all_namespaces(label_selector="suite=all-ns")
    assert {(i.metadata.namespace, i.metadata.name) for i in everywhere.items} >= {(ns, "shared"), (other, "shared")}
    named = core.list_namespaced_config_map(ns, field_selector="metadata.name=shared")
    assert [item.metadata.name for item in named.items] == ["shared"]


# ---- server-side apply ------------------------------------------------------------------------------

def test_apply_creates_and_identical_reapply_changes_nothing(dyn: DynamicClient, configmaps: Resource,
                                                            ns: str) -> None:
    first = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}, {"app": "x"}),
                                  field_manager="meshc")
    assert managers(first)[("meshc", "Apply")] == {"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}
    again = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}, {"app": "x"}),
                                  field_manager="meshc")
    assert again.metadata.resourceVersion == first.metadata.resourceVersion
    assert dyn.get(configmaps, name="cfg", namespace=ns).metadata.resourceVersion == first.metadata.resourceVersion


def test_reapply_without_a_field_removes_it(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1", "gone": "2"}, {"app": "x", "old": "y"}),
                          field_manager="meshc")
    after = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}, {"app": "x"}),
                                  field_manager="meshc")
    assert after.data.to_dict() == {"k": "1"}
    assert after.metadata.labels.to_dict() == {"app": "x"}


def test_field_another_applier_owns_survives_removal(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1", "both": "2"}), field_manager="meshc")
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"both": "2"}), field_manager="other")
    after = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    assert after.data.to_dict() == {"k": "1", "both": "2"}


def test_conflict_between_appliers_without_force(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    status, body = failure(lambda: dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "2"}),
                                                         field_manager="other"))
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "meshc": .data.k'
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "meshc"',
                                          "field": ".data.k"}]
    assert dyn.get(configmaps, name="cfg", namespace=ns).data.to_dict() == {"k": "1"}


def test_same_value_from_two_appliers_is_shared(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    shared = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="other")
    owners = managers(shared)
    assert owners[("meshc", "Apply")] == owners[("other", "Apply")] == {"f:data": {"f:k": {}}}


def test_force_takes_ownership(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1", "mine": "m"}), field_manager="meshc")
    forced = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "2"}), field_manager="other",
                                   force_conflicts=True)
    assert forced.data.to_dict() == {"k": "2", "mine": "m"}
    owners = managers(forced)
    assert owners[("other", "Apply")] == {"f:data": {"f:k": {}}}
    assert owners[("meshc", "Apply")] == {"f:data": {"f:mine": {}}}
    status, body = failure(lambda: dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}),
                                                         field_manager="meshc"))
    assert status == 409 and 'conflict with "other"' in body["message"]


def test_an_edit_by_another_actor_is_a_conflict_until_forced(dyn: DynamicClient, configmaps: Resource,
                                                             ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    dyn.patch(configmaps, body={"metadata": {"name": "cfg"}, "data": {"k": "edited"}}, namespace=ns,
              content_type="application/merge-patch+json", field_manager="kubectl-edit")
    status, body = failure(lambda: dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}),
                                                         field_manager="meshc"))
    assert status == 409
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.k'
    restored = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc",
                                     force_conflicts=True)
    assert restored.data.to_dict() == {"k": "1"}
    assert ("kubectl-edit", "Update") not in managers(restored)


def test_apply_tracks_keyed_list_items(dyn: DynamicClient, deployments: Resource, ns: str) -> None:
    applied = dyn.server_side_apply(deployments, body=deployment("web", ns, env={"A": "1", "B": "2"}),
                                    field_manager="meshc")
    container = managers(applied)[("meshc", "Apply")]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert container['k:{"name":"app"}']["f:env"] == {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}},
                                                      'k:{"name":"B"}': {".": {}, "f:name": {}, "f:value": {}}}
    trimmed = dyn.server_side_apply(deployments, body=deployment("web", ns, env={"A": "1"}), field_manager="meshc")
    env = trimmed.to_dict()["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}]


def test_generation_moves_with_spec_not_labels(dyn: DynamicClient, deployments: Resource, ns: str) -> None:
    created = dyn.server_side_apply(deployments, body=deployment("web", ns), field_manager="meshc")
    assert created.metadata.generation == 1
    relabeled = dyn.server_side_apply(deployments, body=deployment("web", ns, labels={"app": "web", "x": "y"}),
                                      field_manager="meshc")
    assert relabeled.metadata.generation == 1
    assert relabeled.metadata.resourceVersion != created.metadata.resourceVersion
    scaled = dyn.server_side_apply(deployments, body=deployment("web", ns, replicas=3,
                                                                labels={"app": "web", "x": "y"}),
                                   field_manager="meshc")
    assert (scaled.metadata.generation, scaled.spec.replicas) == (2, 3)


def test_dry_run_apply_stores_nothing(dyn: DynamicClient, configmaps: Resource, ns: str) -> None:
    preview = dyn.server_side_apply(configmaps, body=configmap("dry", ns, {"k": "1"}), field_manager="meshc",
                                    dry_run="All")
    assert preview.data.to_dict() == {"k": "1"}
    status, _ = failure(lambda: dyn.get(configmaps, name="dry", namespace=ns))
    assert status == 404
    stored = dyn.server_side_apply(configmaps, body=configmap("dry", ns, {"k": "1"}), field_manager="meshc")
    changed = dyn.server_side_apply(configmaps, body=configmap("dry", ns, {"k": "2"}), field_manager="meshc",
                                    dry_run="All")
    assert changed.data.to_dict() == {"k": "2"}
    live = dyn.get(configmaps, name="dry", namespace=ns)
    assert (live.data.to_dict(), live.metadata.resourceVersion) == ({"k": "1"}, stored.metadata.resourceVersion)


# ---- namespaces -------------------------------------------------------------------------------------

def test_deleting_a_namespace_deletes_its_objects(kube_api: KubeAPIHandle, core: client.CoreV1Api) -> None:
    doomed = kube_api.create_namespace("meshc-doomed")
    core.create_namespaced_config_map(doomed, configmap("inside", doomed, {"k": "v"}))
    core.delete_namespace(doomed)

    def gone() -> None:
        status, _ = failure(lambda: core.read_namespaced_config_map("inside", doomed))
        assert status == 404
        status, _ = failure(lambda: core.read_namespace(doomed))
        assert status == 404

    kube_api.eventually(gone)


# ---- test hooks (double only) -----------------------------------------------------------------------

def test_injected_failure_then_success(kube_api: KubeAPIHandle, dyn: DynamicClient, configmaps: Resource,
                                       ns: str) -> None:
    kube_api.reset_log()
    kube_api.fail_next(1, status=500, methods={"PATCH"})
    status, body = failure(lambda: dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}),
                                                         field_manager="meshc"))
    assert (status, body["reason"]) == (500, "InternalError")
    assert kube_api.store_get("configmaps", "cfg", ns) is None
    applied = dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    assert applied.data.to_dict() == {"k": "1"}
    writes = kube_api.writes()
    assert [(w.method, w.status, w.injected, w.changed) for w in writes] == [
        ("PATCH", 500, True, False), ("PATCH", 201, False, True)]
    assert writes[1].query == {"fieldManager": "meshc"}
    assert writes[1].content_type == "application/apply-patch+yaml"


@pytest.mark.parametrize(("code", "reason"), [(409, "Conflict"), (429, "TooManyRequests"),
                                              (503, "ServiceUnavailable")])
def test_injected_failures_carry_status_reasons(kube_api: KubeAPIHandle, core: client.CoreV1Api, ns: str,
                                                code: int, reason: str) -> None:
    kube_api.fail_next(2, status=code, path_contains="/configmaps")
    for _ in range(2):
        status, body = failure(lambda: core.list_namespaced_config_map(ns))
        assert (status, body["reason"], body["code"]) == (code, reason, code)
    assert core.list_namespaced_config_map(ns).items is not None


def test_noop_apply_is_logged_as_an_unchanged_write(kube_api: KubeAPIHandle, dyn: DynamicClient,
                                                    configmaps: Resource, ns: str) -> None:
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    kube_api.reset_log()
    dyn.server_side_apply(configmaps, body=configmap("cfg", ns, {"k": "1"}), field_manager="meshc")
    assert [(w.status, w.changed, w.field_manager) for w in kube_api.writes()] == [(200, False, "meshc")]


def test_store_get_sees_what_the_client_wrote(kube_api: KubeAPIHandle, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("seen", ns, {"k": "v"}))
    stored = kube_api.store_get("ConfigMap", "seen", ns)
    assert stored is not None and stored["data"] == {"k": "v"}
    assert stored["metadata"]["managedFields"][0]["manager"] == "OpenAPI-Generator"
