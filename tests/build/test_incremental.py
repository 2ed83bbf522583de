"""Incremental builds: a bundle built from an earlier compilation, emitting only the services
whose output can differ, is the bundle a full build makes, byte for byte.

Every example and a generated mesh go through many random edits of the kinds a commit makes
(an image, a caller's policy, a callee's policy, a new call, a removed or added service, routes
and mirrors, mTLS and callers, mesh-wide settings); each edited spec is built in full and
incrementally from the unedited one, and the two bundles must be equal.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.gen_mesh import generate
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, Compiled, affected_services, check, compile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Spec = dict[str, Any]
Edit = Callable[[Spec, random.Random], bool]   # edits the spec in place; False when it does not apply


def _services(spec: Spec) -> list[Spec]:
    services: list[Spec] = spec["spec"]["services"]
    return services


def _deployed(spec: Spec) -> list[Spec]:
    return [s for s in _services(spec) if "endpoints" not in s]


def _pick(rng: random.Random, items: list[Spec]) -> Spec | None:
    return rng.choice(items) if items else None


def edit_image(spec: Spec, rng: random.Random) -> bool:
    service = _pick(rng, _deployed(spec))
    if service is None:
        return False
    target = rng.choice(service["versions"]) if service.get("versions") else service
    if "image" not in target:
        return False
    target["image"] = target["image"].rsplit(":", 1)[0] + f":{rng.randint(100, 999)}"
    return True


def edit_workload(spec: Spec, rng: random.Random) -> bool:
    service = _pick(rng, _deployed(spec))
    if service is None:
        return False
    choice = rng.randrange(3)
    if choice == 0:
        service.setdefault("env", {})["FEATURE_FLAG"] = str(rng.randint(0, 9))
    elif choice == 1:
        service["resources"] = {"requests": {"cpu": f"{rng.randint(1, 9)}00m", "memory": "64Mi"}}
    else:
        service["volumes"] = [{"name": "scratch", "mountPath": "/scratch", "emptyDir": {}}]
    return True


def edit_caller_timeout(spec: Spec, rng: random.Random) -> bool:
    caller = _pick(rng, [s for s in _services(spec) if s.get("upstreams")])
    if caller is None:
        return False
    upstream = rng.choice(caller["upstreams"])
    upstream["timeout"] = f"{rng.randint(20, 40)}s"
    upstream.pop("retries", None)
    upstream.pop("failurePolicy", None)
    return True


def edit_callee_policy(spec: Spec, rng: random.Random) -> bool:
    callee = _pick(rng, [s for s in _services(spec) if s.get("port")])
    if callee is None:
        return False
    choice = rng.randrange(3)
    if choice == 0:
        callee["connectTimeout"] = f"{rng.randint(2, 9)}s"
    elif choice == 1:
        callee["circuitBreaker"] = {"maxConnections": rng.randint(10, 500)}
    else:
        callee["outlierDetection"] = {"consecutive5xx": rng.randint(2, 9)}
    return True


def edit_new_call(spec: Spec, rng: random.Random) -> bool:
    caller = _pick(rng, _deployed(spec))
    called = {u["service"] for u in (caller or {}).get("upstreams", [])}
    callee = _pick(rng, [s for s in _services(spec) if s.get("port") and caller is not None
                         and s["name"] not in called and s["name"] != caller["name"]])
    if caller is None or callee is None:
        return False
    used = {u["localPort"] for s in _services(spec) for u in s.get("upstreams", [])}
    port = next(p for p in range(20000, 30000) if p not in used)
    caller.setdefault("upstreams", []).append({"service": callee["name"], "localPort": port, "timeout": "60s",
                                               "retries": {"attempts": 0}})
    return True


def edit_remove_uncalled(spec: Spec, rng: random.Random) -> bool:
    called = {u["service"] for s in _services(spec) for u in s.get("upstreams", [])}
    routed = {r["service"] for g in spec["spec"].get("gateways", []) for r in g.get("routes", [])}
    mirrored = {r["mirror"]["service"] for s in _services(spec) for r in s.get("routes", []) if "mirror" in r}
    service = _pick(rng, [s for s in _services(spec) if s["name"] not in called | routed | mirrored])
    if service is None or len(_services(spec)) < 2:
        return False
    _services(spec).remove(service)
    entry_points = spec["spec"].get("analysis", {}).get("entryPoints")
    if entry_points and service["name"] in entry_points:
        entry_points.remove(service["name"])
    return True


def edit_add_service(spec: Spec, rng: random.Random) -> bool:
    name = f"added-{rng.randint(1000, 9999)}"
    _services(spec).append({"name": name, "image": f"example.com/{name}:1", "port": 8080})
    entry_points = spec["spec"].get("analysis", {}).get("entryPoints")
    if entry_points is not None:
        entry_points.append(name)
    return True


def edit_mtls(spec: Spec, rng: random.Random) -> bool:
    service = _pick(rng, [s for s in _deployed(spec) if s.get("port")])
    if service is None:
        return False
    service["mtls"] = rng.choice(["strict", "permissive", "off"])
    return True


def edit_extra_caller(spec: Spec, rng: random.Random) -> bool:
    service = _pick(rng, [s for s in _deployed(spec) if s.get("port")])
    if service is None:
        return False
    service["extraCallers"] = [{"namespace": "monitoring", "serviceAccount": f"probe-{rng.randint(1, 9)}"}]
    return True


def edit_route(spec: Spec, rng: random.Random) -> bool:
    callee = _pick(rng, [s for s in _deployed(spec) if len(s.get("versions", [])) >= 2
                         and s.get("protocol", "http") != "tcp"])
    if callee is None:
        return False
    route: Spec = {"name": f"r{rng.randint(1, 99)}", "match": {"headers": {"x-test": {"exact": "yes"}}},
                   "version": rng.choice(callee["versions"])["name"]}
    others = [s for s in _deployed(spec) if s["name"] != callee["name"] and s.get("port")
              and s.get("protocol", "http") != "tcp"]
    if others and rng.random() < 0.5:
        route["mirror"] = {"service": rng.choice(others)["name"], "percent": 10}
    callee["routes"] = [route]
    return True


def edit_weights(spec: Spec, rng: random.Random) -> bool:
    service = _pick(rng, [s for s in _deployed(spec) if len(s.get("versions", [])) == 2])
    if service is None:
        return False
    share = rng.choice([0, 10, 50, 90, 100])
    service["versions"][0]["weight"], service["versions"][1]["weight"] = share, 100 - share
    return True


def edit_static_endpoints(spec: Spec, rng: random.Random) -> bool:
    service = _pick(rng, [s for s in _services(spec) if s.get("endpoints")])
    if service is None:
        return False
    service["endpoints"] = [{**service["endpoints"][0], "port": rng.randint(1025, 9999)}]
    return True


def edit_gateway(spec: Spec, rng: random.Random) -> bool:
    gateway = _pick(rng, spec["spec"].get("gateways", []))
    service = _pick(rng, [s for s in _deployed(spec) if s.get("port") and s.get("protocol", "http") != "tcp"])
    if gateway is None or service is None:
        return False
    if gateway["routes"] and rng.random() < 0.5:
        gateway["routes"].pop(rng.randrange(len(gateway["routes"])))
    gateway["routes"].insert(0, {"match": {"path": {"prefix": f"/g{rng.randint(1, 99)}"}}, "service": service["name"]})
    return True


def edit_mesh_wide(spec: Spec, rng: random.Random) -> bool:
    if rng.random() < 0.5:
        spec["spec"].setdefault("proxy", {})["accessLog"] = rng.choice(["off", "json", "text"])
    else:
        spec["spec"].setdefault("security", {})["trustDomain"] = f"td{rng.randint(1, 9)}.example"
    return True


EDITS: tuple[Edit, ...] = (edit_image, edit_workload, edit_caller_timeout, edit_callee_policy, edit_new_call, edit_remove_uncalled,
                           edit_add_service, edit_mtls, edit_extra_caller, edit_route, edit_weights,
                           edit_static_endpoints, edit_gateway, edit_mesh_wide)


def _source(spec: Spec | str) -> SpecSource:
    text = spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False)
    return SpecSource("mesh.yaml", text.encode())


def _bases() -> list[tuple[str, str]]:
    examples = [(path.parent.name, path.read_text()) for path in sorted(EXAMPLES.glob("*/mesh.yaml"))]
    return [*examples, ("generated-60", generate(60, seed=3))]


BASES = _bases()


@pytest.mark.parametrize(("name", "text"), BASES, ids=[name for name, _ in BASES])
def test_an_incremental_build_is_the_full_build_byte_for_byte(name: str, text: str) -> None:
    base = compile(_source(text))
    assert base.bundle is not None, [str(d) for d in base.diagnostics if d.is_error]
    original: Spec = yaml.safe_load(text)
    rng = random.Random(name)
    tried: dict[str, int] = {}
    for _ in range(24):
        edited = copy.deepcopy(original)
        edits = [edit for edit in rng.sample(EDITS, rng.randint(1, 2)) if edit(edited, rng)]
        full = compile(_source(edited))
        if not edits or full.bundle is None:
            continue   # the edit does not apply to this mesh, or made it invalid: nothing to compare
        for edit in edits:
            tried[edit.__name__] = tried.get(edit.__name__, 0) + 1
        incremental = compile(_source(edited), base=base)
        assert incremental.bundle is not None
        assert _differing(full, incremental) == [], [edit.__name__ for edit in edits]
    assert len(tried) >= 5, tried   # the edits did reach the mesh: this compared something


def _differing(full: Compiled, incremental: Compiled) -> list[str]:
    assert full.bundle is not None and incremental.bundle is not None
    paths = set(full.bundle.files) | set(incremental.bundle.files)
    return sorted(p for p in paths if full.bundle.files.get(p) != incremental.bundle.files.get(p))


def test_an_image_change_re_emits_only_its_service() -> None:
    text = generate(60, seed=3)
    spec: Spec = yaml.safe_load(text)
    service = next(s for s in _deployed(spec) if s.get("versions"))
    service["versions"][0]["image"] += "-patched"
    base, edited = check(_source(text)), check(_source(spec))
    assert base.mesh is not None and edited.mesh is not None
    assert affected_services(base.mesh, edited.mesh) == {service["name"]}


def test_a_callee_change_re_emits_its_callers_too() -> None:
    text = generate(60, seed=3)
    spec: Spec = yaml.safe_load(text)
    callers = {}
    for caller in _services(spec):
        for upstream in caller.get("upstreams", []):
            callers.setdefault(upstream["service"], set()).add(caller["name"])
    callee = next(s for s in _deployed(spec) if callers.get(s["name"]))
    callee["connectTimeout"] = "7s"
    base, edited = check(_source(text)), check(_source(spec))
    assert base.mesh is not None and edited.mesh is not None
    assert affected_services(base.mesh, edited.mesh) == {callee["name"]} | {
        name for name in callers[callee["name"]] if any(s["name"] == name for s in _deployed(spec))}


def test_lines_moved_by_an_edit_elsewhere_re_emit_nothing() -> None:
    text = generate(60, seed=3)
    moved = text.replace("spec:\n", "spec:\n  # a comment\n  # and another, moving every service down\n", 1)
    base, edited = check(_source(text)), check(_source(moved))
    assert base.mesh is not None and edited.mesh is not None
    assert base.mesh.services[0].span != edited.mesh.services[0].span
    assert affected_services(base.mesh, edited.mesh) == frozenset()


def test_a_mesh_wide_change_re_emits_everything() -> None:
    text = generate(60, seed=3)
    spec: Spec = yaml.safe_load(text)
    spec["spec"].setdefault("proxy", {})["accessLog"] = "text"
    base, edited = check(_source(text)), check(_source(spec))
    assert base.mesh is not None and edited.mesh is not None
    assert affected_services(base.mesh, edited.mesh) is None


def test_a_base_built_with_other_options_is_not_reused() -> None:
    text = generate(20, seed=3)
    base = compile(_source(text), BuildOptions(config_dir="/other"))
    full, incremental = compile(_source(text)), compile(_source(text), base=base)
    assert base.bundle is not None and full.bundle is not None
    assert base.bundle.files != full.bundle.files
    assert _differing(full, incremental) == []


@pytest.mark.parametrize(("name", "text"), BASES[-3:], ids=[name for name, _ in BASES[-3:]])
def test_a_diff_built_from_what_can_differ_finds_every_output_change(name: str, text: str) -> None:
    from meshc.review import spec_view
    from meshc.review.diff import build_side, diff_sides, with_outputs

    base = compile(_source(text))
    assert base.bundle is not None
    original: Spec = yaml.safe_load(text)
    rng = random.Random(f"diff-{name}")
    compared = 0
    for _ in range(8):
        edited = copy.deepcopy(original)
        if not [edit for edit in rng.sample(EDITS, 2) if edit(edited, rng)]:
            continue
        full = compile(_source(edited))
        if full.bundle is None:
            continue
        old, new = build_side("a", _source(text)), build_side("b", _source(edited))
        assert old.mesh is not None and new.mesh is not None
        # what a diff that looks at everything sees: every subject, every file of both bundles
        whole = diff_sides(replace(old, subjects=spec_view.subjects(old.mesh), files=base.bundle.files),
                           replace(new, subjects=spec_view.subjects(new.mesh), files=full.bundle.files))
        narrowed = diff_sides(*with_outputs(old, new))
        assert narrowed.output_changes == whole.output_changes
        assert narrowed.spec_changes == whole.spec_changes
        assert narrowed.access_changes == whole.access_changes
        compared += bool(whole.output_changes and whole.spec_changes)
    assert compared >= 4


def test_a_packed_bundle_reads_as_the_bundle_and_carries_its_packed_files_into_the_next() -> None:
    from meshc.bundle import PackedFiles, pack

    text = generate(60, seed=3)
    base = compile(_source(text))
    assert base.bundle is not None
    packed = pack(base.bundle)
    files = packed.files
    assert isinstance(files, PackedFiles)
    assert list(files) == list(base.bundle.files) and len(files) == len(base.bundle.files)
    assert dict(files.items()) == dict(base.bundle.files)
    envoy = [path for path in files if path.startswith("envoy/")]
    assert envoy and all(files.packed(path) is not None for path in envoy)
    assert sum(len(files.packed(path) or b"") for path in envoy) * 4 < sum(len(files[path]) for path in envoy)
    assert files.packed("etcd/seed.json") is None and "etcd/seed.json" in files and "nothing" not in files

    spec: Spec = yaml.safe_load(text)
    rng = random.Random("packed")
    packed_base = replace(base, bundle=packed)
    for _ in range(6):
        edited = copy.deepcopy(spec)
        if not edit_image(edited, rng) or not edit_caller_timeout(edited, rng):
            continue
        full, incremental = compile(_source(edited)), compile(_source(edited), base=packed_base)
        assert incremental.bundle is not None and full.bundle is not None
        assert isinstance(incremental.bundle.files, PackedFiles)
        carried = [p for p in envoy if incremental.bundle.files.packed(p) is files.packed(p)]
        assert carried   # unaffected sidecars' files kept their compressed bytes, not packed again
        assert dict(incremental.bundle.files.items()) == dict(full.bundle.files)
        assert dict(pack(incremental.bundle).files.items()) == dict(full.bundle.files)
