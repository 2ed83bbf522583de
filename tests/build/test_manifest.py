"""OUT/manifest.json: meshc version, spec digest, sha256 of every file; no clock, no commit in objects."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import orjson

import meshc
from meshc.emit import naming
from tests.build.tree import compiled, files, meshc as run_meshc
from tests.support.gitrepo import GitRepo

# ISO dates, RFC 3339 times and Unix times from this century: none may appear in the output.
_CLOCK = re.compile(rb"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\b1[6-9]\d{8}\b")


def test_manifest_describes_every_file(spec_paths: dict[str, Path], tmp_path: Path) -> None:
    for name, spec in spec_paths.items():
        out = tmp_path / name
        assert run_meshc("build", str(spec), "-o", str(out)).returncode == 0
        written = files(out)
        manifest = orjson.loads(written.pop(naming.MANIFEST_PATH))
        assert manifest["kind"] == "BuildManifest" and manifest["apiVersion"] == "meshc.dev/v1alpha1"
        assert manifest["meshcVersion"] == meshc.__version__
        assert manifest["source"] == {"digest": hashlib.sha256(spec.read_bytes()).hexdigest(), "revision": None}
        assert list(manifest["files"]) == sorted(written)
        for path, data in written.items():
            assert manifest["files"][path] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_no_timestamps_anywhere(spec_paths: dict[str, Path]) -> None:
    for spec in spec_paths.values():
        for path, data in compiled(spec).files.items():
            assert not _CLOCK.search(data), path
            assert b"timestamp" not in data.lower() and b"builtat" not in data.lower(), path


def test_a_build_from_git_records_the_revision_in_the_manifest_only(
        git_repo: GitRepo, spec_paths: dict[str, Path], tmp_path: Path) -> None:
    text = spec_paths["shop"].read_text()
    first = git_repo.commit_file("deploy/mesh.yaml", text, "shop")
    second = git_repo.commit_file("README.md", "unrelated\n", "docs")
    outputs = {}
    for sha in (first, second):
        out = tmp_path / sha
        result = run_meshc("build", "deploy/mesh.yaml", "--repo", str(git_repo.path), "--rev", sha, "-o", str(out))
        assert result.returncode == 0, result.stderr
        outputs[sha] = files(out)
        manifest = orjson.loads(outputs[sha][naming.MANIFEST_PATH])
        assert manifest["source"]["revision"] == sha
    from_tree = dict(compiled(spec_paths["shop"]).files)
    for sha, written in outputs.items():
        assert sha.encode() not in b"".join(data for path, data in written.items() if path != naming.MANIFEST_PATH)
        # An unchanged object stays byte-identical across commits: only the manifest moves.
        assert {p: d for p, d in written.items() if p != naming.MANIFEST_PATH} == \
            {p: d for p, d in from_tree.items() if p != naming.MANIFEST_PATH}


EXTERNAL_SPEC = """apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  services:
  - name: web
    image: example.com/web:1
    port: 8080
    env:
      DB_PASSWORD: {secretKeyRef: {name: db, key: password}}
      FLAGS: {configMapKeyRef: {name: flags, key: all, optional: true}}     # optional: not needed to start
      POD_IP: {fieldRef: {fieldPath: status.podIP}}
    volumes:
    - {name: tls, mountPath: /etc/tls, secret: {name: web-tls}}
    - {name: data, mountPath: /data, persistentVolumeClaim: {claimName: web-data}}
    pod: {imagePullSecrets: [regcred]}
  - name: worker
    image: example.com/worker:1
    versions:
    - {name: v1, weight: 100, env: {DB_PASSWORD: {secretKeyRef: {name: db, key: password}}}}
"""


def test_objects_meshc_does_not_create_are_listed_as_external_dependencies(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(EXTERNAL_SPEC)
    out = tmp_path / "out"
    result = run_meshc("build", str(spec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    manifest = orjson.loads((out / naming.MANIFEST_PATH).read_bytes())
    assert manifest["externalDependencies"] == [
        {"kind": "PersistentVolumeClaim", "name": "web-data", "namespace": "shop", "usedBy": ["web"]},
        {"kind": "Secret", "name": "db", "namespace": "shop", "usedBy": ["web", "worker"]},
        {"kind": "Secret", "name": "regcred", "namespace": "shop", "usedBy": ["web"]},
        {"kind": "Secret", "name": "web-tls", "namespace": "shop", "usedBy": ["web"]},
    ]
    (line,) = [line for line in result.stderr.splitlines() if "does not create" in line]
    assert line.endswith("PersistentVolumeClaim/web-data, Secret/db, Secret/regcred, Secret/web-tls")


def test_a_mesh_without_external_objects_lists_none(spec_paths: dict[str, Path], tmp_path: Path) -> None:
    spec = next(iter(spec_paths.values()))
    result = run_meshc("build", str(spec), "-o", str(tmp_path / "out"))
    assert "externalDependencies" not in orjson.loads((tmp_path / "out" / naming.MANIFEST_PATH).read_bytes())
    assert "does not create" not in result.stderr
