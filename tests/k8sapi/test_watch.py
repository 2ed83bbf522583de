"""Watch streams, as meshc's drift detection relies on them, through the official client."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from tests.k8sapi import fixtures
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.k8sapi.test_contract import configmap

kube_api = fixtures.kube_api

SELECTED = {"meshc.dev/mesh": "shop"}


@pytest.fixture
def dyn(kube_api: KubeAPIHandle) -> DynamicClient:
    return kube_api.dynamic()


@pytest.fixture
def configmaps(dyn: DynamicClient) -> Resource:
    return dyn.resources.get(api_version="v1", kind="ConfigMap")


def _stream(dyn: DynamicClient, resource: Resource, namespace: str, version: str,
            seconds: int = 5, **extra: Any) -> Any:
    return watch.Watch().stream(dyn.get, resource, namespace=namespace, label_selector="meshc.dev/mesh=shop",
                                resource_version=version, timeout_seconds=seconds, serialize=False, **extra)


def _in_background(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_a_watch_from_a_list_sees_later_changes_of_selected_objects_only(
        kube_api: KubeAPIHandle, dyn: DynamicClient, configmaps: Resource) -> None:
    ns = kube_api.create_namespace()
    configmaps.create(configmap("a", ns, {"k": "1"}, SELECTED))
    version = configmaps.get(namespace=ns, label_selector="meshc.dev/mesh=shop").metadata.resourceVersion
    seen: list[tuple[str, str, dict[str, str]]] = []

    def changes() -> None:
        configmaps.patch(name="a", namespace=ns, body={"data": {"k": "2"}},
                         content_type="application/merge-patch+json")
        configmaps.create(configmap("other", ns, {"k": "x"}))       # not selected
        configmaps.delete(name="a", namespace=ns)

    _in_background(changes)
    for event in _stream(dyn, configmaps, ns, version):
        seen.append((event["type"], event["raw_object"]["metadata"]["name"], event["raw_object"].get("data", {})))
        if event["type"] == "DELETED":
            break
    assert seen == [("MODIFIED", "a", {"k": "2"}), ("DELETED", "a", {"k": "2"})]


def test_a_watch_from_version_zero_starts_with_the_current_objects(
        kube_api: KubeAPIHandle, dyn: DynamicClient, configmaps: Resource) -> None:
    ns = kube_api.create_namespace()
    configmaps.create(configmap("a", ns, {"k": "1"}, SELECTED))
    first = next(iter(_stream(dyn, configmaps, ns, "0")))
    assert (first["type"], first["raw_object"]["metadata"]["name"]) == ("ADDED", "a")
    assert first["raw_object"]["kind"] == "ConfigMap"


def test_a_watch_older_than_the_history_gets_410_gone(
        kube_api: KubeAPIHandle, dyn: DynamicClient, configmaps: Resource) -> None:
    ns = kube_api.create_namespace()
    configmaps.create(configmap("a", ns, {"k": "1"}, SELECTED))
    version = configmaps.get(namespace=ns).metadata.resourceVersion
    configmaps.patch(name="a", namespace=ns, body={"data": {"k": "2"}}, content_type="application/merge-patch+json")
    kube_api.compact_history()
    with pytest.raises(ApiException) as gone:
        list(_stream(dyn, configmaps, ns, version))
    assert gone.value.status == 410


def test_an_idle_watch_sends_bookmarks_when_asked(
        kube_api: KubeAPIHandle, dyn: DynamicClient, configmaps: Resource) -> None:
    if not kube_api.is_double:
        pytest.skip("a real server sends bookmarks at its own pace (about once a minute)")
    assert kube_api.double is not None
    kube_api.double.store.events.bookmark_every = 0.2
    ns = kube_api.create_namespace()
    version = configmaps.get(namespace=ns).metadata.resourceVersion
    event = next(iter(_stream(dyn, configmaps, ns, version, allow_watch_bookmarks=True)))
    assert event["type"] == "BOOKMARK"
    assert int(event["raw_object"]["metadata"]["resourceVersion"]) >= int(version)
