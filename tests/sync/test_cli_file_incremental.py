"""`meshc plan/apply mesh.yaml --etcd URL ...` (a spec file, no --repo) of an edited spec plans only
what changed since the spec etcd records as applied (its digest), from the compilation an earlier
run kept; re-applying the same bytes, `--full`, or nothing kept plans everything. Real processes,
a real etcd and the Kubernetes API double."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from meshc.sync.etcd_layout import read_snapshot
from tests.k8sapi.fixtures import KubeAPIHandle
from tests.support.etcd import EtcdServer
from tests.sync.specs import NAMESPACE, PREFIX, chain_spec
from tests.sync.test_cli_cache import HOSTED, entries, hosted, kept_files, lists, meshc
from tests.sync.test_cli_incremental_check import watched
from tests.sync.test_rename import objects_of

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]
SCALED = [["deployments", "svc-001"], ["poddisruptionbudgets", "svc-001"]]   # what scaling svc-001 to 3 writes


class Bed:
    def __init__(self, tmp_path: Path, kube_api: KubeAPIHandle, etcd: EtcdServer) -> None:
        self.tmp_path = tmp_path
        self.spec = tmp_path / "mesh.yaml"
        self.cache = tmp_path / "cache"
        self.kube_api = kube_api
        self.etcd = etcd
        self.targets = ["--kubeconfig", str(kube_api.kubeconfig), "--etcd", etcd.url]

    def write(self, spec: dict[str, Any]) -> str:
        """Write the spec file; the digest etcd records once it is applied."""
        data = yaml.safe_dump(spec, sort_keys=False).encode()
        self.spec.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def run(self, verb: str, *extra: str, spec: str | None = None) -> subprocess.CompletedProcess[str]:
        return meshc(verb, spec or str(self.spec), *self.targets, *extra, cache=self.cache)

    def watched(self, verb: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """run(), with the checks the process made counted (incremental ones, and full ones)."""
        return watched([verb, str(self.spec), *self.targets, *extra], self.cache, self.tmp_path / "checks.json")

    def applied(self, spec: dict[str, Any]) -> str:
        digest = self.write(spec)
        result = self.run("apply")
        assert result.returncode == 0, result.stderr
        return digest

    def replicas(self, service: str, namespace: str = NAMESPACE) -> Any:
        return self.kube_api.store_get("deployments", service, namespace)["spec"]["replicas"]  # type: ignore[index]

    def hand_scale(self, service: str, replicas: int) -> None:
        client.AppsV1Api(self.kube_api.api_client()).patch_namespaced_deployment(
            service, NAMESPACE, {"spec": {"replicas": replicas}})

    def writes(self) -> list[list[str]]:
        return sorted(w.path.rsplit("/", 2)[-2:] for w in self.kube_api.writes())

    def objects_read(self) -> set[str]:
        """The names of the objects read one by one (GETs that are not LISTs)."""
        return {r.path.rsplit("/", 1)[-1] for r in self.kube_api.requests
                if r.method == "GET" and "labelSelector" not in r.query and "/namespaces/" in r.path}

    def recorded(self) -> str | None:
        return read_snapshot(self.etcd.client(), PREFIX).revision


@pytest.fixture
def bed(tmp_path: Path, kube_api: KubeAPIHandle, etcd_server: EtcdServer) -> Bed:
    return Bed(tmp_path, kube_api, etcd_server)


def test_an_edited_spec_is_planned_against_the_recorded_one(bed: Bed) -> None:
    first = bed.applied(chain_spec(6))
    assert bed.recorded() == first
    bed.hand_scale("svc-004", 9)
    edited = bed.write(chain_spec(6, replicas={"svc-001": 3}))
    bed.kube_api.reset_log()

    applied, checks = bed.watched("apply")

    assert applied.returncode == 0, applied.stderr
    assert checks == {"incremental": [True], "full": 0}     # checked from the kept compilation of `first`
    assert lists(bed.kube_api) == 0
    assert bed.objects_read() and all(name.startswith("svc-001") for name in bed.objects_read())
    assert bed.writes() == SCALED
    assert bed.recorded() == edited
    assert bed.replicas("svc-001") == 3
    assert bed.replicas("svc-004") == 9                      # not looked at: left to a full plan
    bed.kube_api.reset_log()

    again = bed.run("apply")                                 # the bytes etcd records: a drift check

    assert again.returncode == 0, again.stderr
    assert lists(bed.kube_api) > 0
    assert "drift: spec.replicas" in again.stdout and "svc-004" in again.stdout
    assert bed.replicas("svc-004") == 1


def test_full_plans_everything(bed: Bed) -> None:
    bed.applied(chain_spec(6))
    bed.hand_scale("svc-002", 5)
    edited = bed.write(chain_spec(6, replicas={"svc-000": 2}))
    bed.kube_api.reset_log()

    applied = bed.run("apply", "--full")

    assert applied.returncode == 0, applied.stderr
    assert lists(bed.kube_api) > 0
    assert bed.replicas("svc-002") == 1 and bed.replicas("svc-000") == 2
    assert bed.recorded() == edited


@pytest.mark.parametrize("loss", ["removed", "damaged", "spelled otherwise"])
def test_without_the_kept_compilation_the_plan_is_full_and_applies_the_same(bed: Bed, loss: str) -> None:
    bed.applied(chain_spec(6))
    (kept,) = kept_files(bed.cache)
    if loss == "removed":
        kept.unlink()
    elif loss == "damaged":
        kept.write_bytes(kept.read_bytes()[:1000])           # cut short, still the user's own 0600 file
    edited = bed.write(chain_spec(6, replicas={"svc-001": 3}))
    bed.kube_api.reset_log()

    # the same file named another way is another spec name: another entry, none kept
    applied = bed.run("apply", spec=f"{bed.spec.parent}/./{bed.spec.name}" if loss == "spelled otherwise" else None)

    assert applied.returncode == 0, applied.stderr
    assert lists(bed.kube_api) > 0
    assert bed.writes() == SCALED
    assert bed.recorded() == edited and bed.replicas("svc-001") == 3


def test_plan_then_apply_of_an_edited_file(bed: Bed) -> None:
    bed.applied(chain_spec(6))
    edited = bed.write(chain_spec(6, replicas={"svc-001": 3}))
    bed.kube_api.reset_log()

    before = entries(bed.cache)
    planned = bed.run("plan")
    after_plan = entries(bed.cache)
    (kept_by_plan,) = after_plan.keys() - before.keys()
    applied, checks = bed.watched("apply")

    assert planned.returncode == 0 and applied.returncode == 0, planned.stderr + applied.stderr
    assert f"~ update    apps/v1 Deployment {NAMESPACE}/svc-001" in planned.stdout
    assert "svc-004" not in planned.stdout
    # checked from the applied spec's compilation (one entry read, not two); the plan's left as it was
    assert checks == {"incremental": [True], "full": 0}
    assert entries(bed.cache)[kept_by_plan] == after_plan[kept_by_plan]     # neither read nor written again
    assert lists(bed.kube_api) == 0
    assert bed.writes() == SCALED
    assert bed.recorded() == edited


def test_the_applied_spec_kept_with_other_build_options_is_not_planned_against(bed: Bed) -> None:
    bed.applied(chain_spec(3))
    assert bed.run("apply", *HOSTED).returncode == 0      # the same bytes: a full plan, and a kept entry
    assert bed.run("apply").returncode == 0               # back: what is live is the spec built without it
    assert not hosted(bed.kube_api)
    bed.write(chain_spec(3, replicas={"svc-002": 2}))
    bed.kube_api.reset_log()

    # the kept compilation of the recorded spec with these options is not what etcd records as live
    applied = bed.run("apply", *HOSTED)

    assert applied.returncode == 0, applied.stderr
    assert hosted(bed.kube_api) and bed.replicas("svc-002") == 2
    assert lists(bed.kube_api) > 0                         # planned in full


@pytest.mark.parametrize("rename", ["metadata.name", "spec.namespace"])
def test_a_renamed_mesh_is_refused_then_allowed(bed: Bed, rename: str) -> None:
    bed.applied(chain_spec(2))
    spec = chain_spec(2, namespace="shop" if rename == "spec.namespace" else NAMESPACE)
    if rename == "metadata.name":
        spec["metadata"]["name"] = "shop"                    # the same etcd prefix, which records the old spec
    bed.write(spec)
    bed.kube_api.reset_log()
    etcd_before = {meta["key"]: value for value, meta in bed.etcd.client().get_prefix("/meshc/")}

    refused = bed.run("apply")

    assert refused.returncode == 1
    assert "refusing to rename the mesh" in refused.stderr and "--allow-mesh-rename" in refused.stderr
    assert bed.kube_api.writes() == []
    assert {meta["key"]: value for value, meta in bed.etcd.client().get_prefix("/meshc/")} == etcd_before

    allowed = bed.run("apply", "--allow-mesh-rename")

    assert allowed.returncode == 0, allowed.stderr
    namespace = "shop" if rename == "spec.namespace" else NAMESPACE
    assert bed.replicas("svc-000", namespace) == 1
    if rename == "metadata.name":
        assert objects_of(bed.kube_api, "sync") == [] and objects_of(bed.kube_api, "shop")
    else:
        assert bed.kube_api.store_get("deployments", "svc-000", NAMESPACE) is None
