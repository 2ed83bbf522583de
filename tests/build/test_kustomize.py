"""OUT/kubernetes is what `kubectl apply -k` takes: the kustomization lists exactly the files, every
file is a multi-document YAML stream of objects, kustomize renders them, and an API server takes them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc import kinds
from meshc.emit import naming
from tests.build.tree import meshc
from tests.k8sapi.fixtures import KubeAPIHandle

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def outputs(spec_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kustomize")
    for name, spec in spec_paths.items():
        result = meshc("build", str(spec), "-o", str(root / name))
        assert result.returncode == 0, result.stderr
    return {name: root / name / "kubernetes" for name in spec_paths}


def objects_in(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((directory / name).read_text()) if doc is not None]


def canonical(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def test_kustomization_lists_exactly_the_files(outputs: dict[str, Path]) -> None:
    for directory in outputs.values():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        on_disk = sorted(p.name for p in directory.iterdir() if p.name != "kustomization.yaml")
        assert sorted(kustomization["resources"]) == on_disk
        assert kustomization["resources"][0] == "namespace.yaml"
        assert set(kustomization) == {"apiVersion", "kind", "resources"}


def test_every_file_is_a_stream_of_objects_of_one_namespace(outputs: dict[str, Path]) -> None:
    for directory in outputs.values():
        objects = objects_in(directory)
        (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
        for obj in objects:
            assert set(obj) >= {"apiVersion", "kind", "metadata"}
            assert obj["apiVersion"] == kinds.API_VERSIONS[obj["kind"]]
            if obj["kind"] != "Namespace":
                assert obj["metadata"]["namespace"] == namespace["metadata"]["name"]
        assert len({identity(o) for o in objects}) == len(objects)
        for path in directory.glob("*.yaml"):
            if path.name not in ("namespace.yaml", "kustomization.yaml"):
                docs = list(yaml.safe_load_all(path.read_text()))
                label = naming.GATEWAY_LABEL if path.stem.startswith("gateway-") else naming.SERVICE_LABEL
                owner = path.stem.removeprefix("gateway-") if label == naming.GATEWAY_LABEL else path.stem
                assert len(docs) >= 4 and all(d["metadata"]["labels"][label] == owner for d in docs)


@needs_kubectl
def test_kustomize_renders_every_object_unchanged(outputs: dict[str, Path]) -> None:
    for directory in outputs.values():
        result = subprocess.run([str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
        ours = objects_in(directory)
        assert sorted(map(canonical, rendered)) == sorted(map(canonical, ours))
        # kustomize applies in kind order; meshc's table must agree on what comes first.
        assert rendered[0]["kind"] == kinds.APPLY_ORDER[0]


@needs_kubectl
def test_kubectl_apply_k_creates_every_object(outputs: dict[str, Path], kube_api: KubeAPIHandle) -> None:
    if not kube_api.is_double:
        pytest.skip("applies fixed namespaces; only against the API server double")
    directory = outputs["shop"]
    command = [str(KUBECTL), "--kubeconfig", str(kube_api.kubeconfig), "apply", "-k", str(directory),
               "--server-side", "--field-manager", naming.FIELD_MANAGER,
               "--validate=false"]   # the double serves no OpenAPI; schemas are checked by kubernetes-validate
    for _ in range(2):   # a second apply of the same output is accepted as well
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    for obj in objects_in(directory):
        kind = kinds.by_name(obj["kind"])
        where = ["-n", obj["metadata"]["namespace"]] if kind.namespaced else []
        got = subprocess.run([str(KUBECTL), "--kubeconfig", str(kube_api.kubeconfig), "get", kind.plural,
                              obj["metadata"]["name"], *where, "-o", "json"], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        live = json.loads(got.stdout)
        assert live["metadata"]["annotations"][naming.CONFIG_HASH_ANNOTATION] == \
            obj["metadata"]["annotations"][naming.CONFIG_HASH_ANNOTATION]
        assert obj["metadata"]["labels"].items() <= live["metadata"]["labels"].items()
