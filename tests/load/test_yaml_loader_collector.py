"""The loader pauses the cycle collector while it builds (nothing it makes is cyclic) and leaves it
as it found it, whether loading succeeds, fails, or the caller had already turned it off."""

from __future__ import annotations

import gc

import pytest

from meshc.load import SpecSource
from meshc.load.yaml_loader import load_yaml

GOOD = b"apiVersion: meshc.io/v1alpha1\nkind: Mesh\nspec:\n  services: {a: {port: 80}}\n"
BAD = b"a: [1, 2\n"


@pytest.mark.parametrize("data", [GOOD, BAD])
def test_the_collector_is_back_on_after_loading(data: bytes) -> None:
    assert gc.isenabled()
    load_yaml(SpecSource("mesh.yaml", data))
    assert gc.isenabled()


def test_the_collector_stays_off_when_the_caller_turned_it_off() -> None:
    gc.disable()
    try:
        assert load_yaml(SpecSource("mesh.yaml", GOOD)).ok
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_failed_load_still_reports_its_diagnostic() -> None:
    loaded = load_yaml(SpecSource("mesh.yaml", BAD))
    assert not loaded.ok and loaded.diagnostics[-1].code == "E005"
