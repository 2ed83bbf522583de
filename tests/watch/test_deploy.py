"""deploy/: manifests valid against the real Kubernetes schemas, least-privilege RBAC, args meshc accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from packaging.version import Version

from meshc.cli import build_parser
from meshc.kinds import API_VERSIONS, by_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
USED_VERBS = {"get", "list", "watch", "create", "patch", "delete"}
PLURALS = {kind: by_name(kind).plural for kind in API_VERSIONS}


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def newest_kubernetes() -> str:
    return max(set(kubernetes_validate.utils.all_versions()), key=Version)


def only(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents() if doc["kind"] == kind]
    return found


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_schema_valid(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, newest_kubernetes(), strict=True)


def test_rbac_grants_exactly_the_managed_kinds_and_the_verbs_used() -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in only("ClusterRole")["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    wanted = {(api_version.rpartition("/")[0], PLURALS[kind]) for kind, api_version in API_VERSIONS.items()}
    assert set(granted) == wanted
    assert all(verbs == USED_VERBS for verbs in granted.values()), granted
    binding = only("ClusterRoleBinding")
    account = only("ServiceAccount")
    assert binding["roleRef"]["name"] == only("ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


def test_the_deployment_runs_meshc_watch_with_arguments_it_accepts() -> None:
    deployment = only("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "watch" and args.in_cluster and args.etcd and args.log_format == "json"
    assert pod["serviceAccountName"] == only("ServiceAccount")["metadata"]["name"]
    _, port = args.metrics_addr
    service = only("Service")
    assert service["spec"]["ports"][0]["port"] == port == container["ports"][0]["containerPort"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.cache_dir) in mounts and "/tmp" in mounts


def test_the_dockerfile_installs_meshc_and_runs_it() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert any(line.startswith("RUN pip install") and line.rstrip().endswith(".") for line in lines)
    assert 'ENTRYPOINT ["meshc"]' in lines
    assert any(line.startswith("USER 65532") for line in lines)
    packages = " ".join(line for line in lines if "apt-get install" in line)
    assert all(tool in packages for tool in ("git", "gnupg"))
