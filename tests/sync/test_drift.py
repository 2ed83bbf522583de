"""Drift is a difference on a path meshc sets; what the server or other controllers add is not."""

from __future__ import annotations

from typing import Any

from meshc.sync.drift import describe, drifted_paths


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"meshc.dev/mesh": "shop"},
                     "annotations": {"meshc.dev/config-hash": "abc"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "web:1", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
             "volumeMounts": [{"name": "envoy", "mountPath": "/etc/envoy", "readOnly": False}]},
            {"name": "envoy", "image": "envoy:1", "args": ["-c", "/etc/envoy/bootstrap.yaml"]}]}}} | spec,
    }


def test_an_identical_object_has_no_drift() -> None:
    assert drifted_paths(deployment(), deployment()) == []


def test_server_defaults_other_metadata_and_status_are_not_drift() -> None:
    live = deployment()
    live["metadata"] |= {"uid": "1", "resourceVersion": "9", "managedFields": [{"manager": "kubectl"}]}
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    live["spec"] |= {"strategy": {"type": "RollingUpdate"}, "revisionHistoryLimit": 10}
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["status"] = {"replicas": 2}
    assert drifted_paths(deployment(), live) == []


def test_normalised_values_are_not_drift() -> None:
    live = deployment()
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["requests"] = {"cpu": "0.5", "memory": "1024Mi"}
    del container["volumeMounts"][0]["readOnly"]   # omitempty: the server drops false
    assert drifted_paths(deployment(), live) == []


def test_changed_fields_meshc_sets_are_drift_with_their_paths() -> None:
    live = deployment(replicas=5)
    live["spec"]["template"]["spec"]["containers"].reverse()   # order of named items does not matter
    live["spec"]["template"]["spec"]["containers"][0]["args"] = ["-c", "/tmp/other.yaml"]
    live["metadata"]["labels"]["meshc.dev/mesh"] = "other"
    paths = drifted_paths(deployment(), live)
    assert paths == ["metadata.labels.meshc.dev/mesh", "spec.replicas",
                     "spec.template.spec.containers[envoy].args[1]"]
    assert describe(paths) == "drift: metadata.labels.meshc.dev/mesh, spec.replicas, " \
                              "spec.template.spec.containers[envoy].args[1]"


def test_removed_items_and_wrong_types_are_drift() -> None:
    live = deployment()
    live["spec"]["template"]["spec"]["containers"].pop()
    live["spec"]["replicas"] = "2"
    assert drifted_paths(deployment(), live) == ["spec.template.spec.containers[envoy]"]
    live["spec"]["replicas"] = True
    assert "spec.replicas" in drifted_paths(deployment(), live)


def test_many_paths_are_summarised() -> None:
    assert describe(["a", "b", "c", "d", "e"]) == "drift: a, b, c (+2 more)"


def test_quantities_are_compared_by_the_value_the_server_keeps() -> None:
    """The server stores a quantity in its canonical spelling, rounded up to a nano unit and capped
    at 2^63-1: none of that is drift; another value is."""
    for desired, live, drifted in [("1e9", "1G", False), (".5", "500m", False), ("5.", "5", False),
                                   ("100n", "100n", False), ("0.1n", "1n", False), ("1e30", "9223372036854775807", False),
                                   ("1.5Gi", "1536Mi", False), ("1e9", "1Gi", True), ("2", "2m", True)]:
        want, have = deployment(), deployment()
        want["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = desired
        have["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = live
        paths = drifted_paths(want, have)
        assert paths == (["spec.template.spec.containers[app].resources.requests.cpu"] if drifted else []), desired
