"""A renamed or moved mesh is refused unless --allow-mesh-rename; with it the old mesh is pruned.
Against the Kubernetes API double and a real etcd, through the CLI (--repo) and the engine."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc.emit.naming import MANAGED_BY_LABEL, MESH_LABEL
from meshc.sync.engine import MeshRenameRefused, PruneRefused, sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.etcd_layout import read_snapshot
from meshc.sync.kubernetes import KubernetesTarget
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.support.gitrepo import GitRepo
from tests.sync.specs import MESH, NAMESPACE, PREFIX, bundle_of, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]
RESOURCES = ("namespaces", "serviceaccounts", "issuers", "certificates", "configmaps", "services", "networkpolicies",
             "deployments")


def meshc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def renamed(spec: dict[str, Any], name: str, *, keep_prefix: bool = False) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["metadata"]["name"] = name
    if not keep_prefix:
        del spec["spec"]["etcd"]           # the default prefix /meshc/<name> moves with the name
    return spec


def objects_of(kube_api: KubeAPIHandle, mesh: str) -> list[str]:
    double = kube_api._need_double()
    found = []
    for resource in RESOURCES:
        for obj in double.store_list(resource):
            labels = obj["metadata"].get("labels") or {}
            if labels.get(MANAGED_BY_LABEL) == "meshc" and labels.get(MESH_LABEL) == mesh:
                found.append(f"{resource}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}")
    return sorted(found)


def test_renaming_metadata_name_is_refused_then_allowed_and_the_old_mesh_is_pruned(
        tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    first = renamed(chain_spec(2), MESH)                     # default prefix /meshc/sync
    repo.commit_file("mesh.yaml", yaml.safe_dump(first, sort_keys=False), "the mesh")
    targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd_server.url]
    applied = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets)
    assert applied.returncode == 0, applied.stderr
    old_objects = objects_of(kube_api, MESH)
    assert old_objects and read_snapshot(etcd_server.client(), "/meshc/sync").records
    # a new name and namespace, the default prefix: nothing on the targets links the two meshes,
    # only the spec at the parent commit does
    repo.commit_file("mesh.yaml", yaml.safe_dump(renamed(chain_spec(2, namespace="shop"), "shop"), sort_keys=False),
                     "rename")
    kube_api.reset_log()
    etcd_before = {meta["key"]: value for value, meta in etcd_server.client().get_prefix("/meshc/")}

    refused = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets)

    assert refused.returncode == 1
    assert "refusing to rename the mesh" in refused.stderr and "--allow-mesh-rename" in refused.stderr
    assert f"applied as {MESH} (namespace {NAMESPACE})" in refused.stderr
    assert kube_api.writes() == []
    assert {meta["key"]: value for value, meta in etcd_server.client().get_prefix("/meshc/")} == etcd_before
    plan = meshc("plan", "--repo", str(repo.path), "mesh.yaml", *targets)
    assert plan.returncode == 0 and "apply would refuse" in plan.stderr and "--allow-mesh-rename" in plan.stderr

    allowed = meshc("apply", "--repo", str(repo.path), "mesh.yaml", *targets, "--allow-mesh-rename")

    assert allowed.returncode == 0, allowed.stderr
    assert objects_of(kube_api, MESH) == []                  # the old mesh is gone from Kubernetes ...
    assert objects_of(kube_api, "shop")
    old = read_snapshot(etcd_server.client(), "/meshc/sync")
    assert (old.revision, old.records) == (None, {})         # ... and from etcd
    assert etcd_server.client().get_prefix("/meshc/sync/") == []
    assert read_snapshot(etcd_server.client(), "/meshc/shop").revision == repo.head_sha
    assert kube_api.store_get("namespaces", NAMESPACE) is None
    assert kube_api.store_get("deployments", "svc-000", "shop") is not None


def test_a_rename_into_the_same_namespace_keeps_it(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(2)), [kube_target])
    sync_once(bundle_of(renamed(chain_spec(2), "shop")), [kube_target], allow_mesh_rename=True)
    namespace = kube_api.store_get("namespaces", NAMESPACE)
    assert namespace is not None and namespace["metadata"]["labels"][MESH_LABEL] == "shop"
    assert objects_of(kube_api, MESH) == [] and objects_of(kube_api, "shop")


def test_a_rename_is_seen_from_the_targets_alone(kube_api: KubeAPIHandle, kube_target: KubernetesTarget,
                                                 etcd_target: EtcdTarget) -> None:
    """No Git, no previous bundle: the Namespace's labels and etcd's pointer name the old mesh."""
    sync_once(bundle_of(chain_spec(2)), [kube_target, etcd_target], revision="a" * 40)
    new = bundle_of(renamed(chain_spec(2), "shop", keep_prefix=True))
    kube_api.reset_log()

    with pytest.raises(MeshRenameRefused) as refused:
        sync_once(new, [kube_target, etcd_target], revision="b" * 40)
    assert {str(old) for old in refused.value.old} == {f"{MESH} (namespace {NAMESPACE})"}
    assert kube_api.writes() == []

    sync_once(new, [kube_target, etcd_target], revision="b" * 40, allow_mesh_rename=True)
    assert objects_of(kube_api, MESH) == []
    snapshot = read_snapshot(etcd_target._client, PREFIX)
    assert snapshot.revision == "b" * 40 and all(b'"namespace":"sync-ns"' in v for v in snapshot.records.values())


def test_moving_the_namespace_is_a_rename(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(1)), [kube_target])
    moved = bundle_of(chain_spec(1, namespace="sync-moved"))
    kube_api.reset_log()

    with pytest.raises(MeshRenameRefused, match="--allow-mesh-rename"):
        sync_once(moved, [kube_target], prune_limit=100)
    assert kube_api.writes() == []

    sync_once(moved, [kube_target], allow_mesh_rename=True)
    assert kube_api.store_get("deployments", "svc-000", "sync-moved") is not None
    assert kube_api.store_get("namespaces", NAMESPACE) is None
    assert [o for o in objects_of(kube_api, MESH) if f"/{NAMESPACE}/" in o or o.endswith(f"/{NAMESPACE}")] == []


def test_the_old_mesh_is_pruned_within_the_prune_limit(kube_api: KubeAPIHandle, kube_target: KubernetesTarget) -> None:
    sync_once(bundle_of(chain_spec(4)), [kube_target])
    new = bundle_of(renamed(chain_spec(4), "shop"))
    kube_api.reset_log()

    with pytest.raises(PruneRefused, match="prune-limit 3"):
        sync_once(new, [kube_target], allow_mesh_rename=True, prune_limit=3)
    assert kube_api.writes() == []
