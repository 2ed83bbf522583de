"""The sidecar ConfigMaps of a service calling N others, against Kubernetes' 1 MiB limit.

For each N: the bytes one ConfigMap would hold with the files as written to envoy/ (the layout
before the split, computed in the same run), the largest ConfigMap of the layout meshc builds, and
how long the check takes in `meshc validate` against a validate of the same spec without it.

    python -m bench.fan_out                 # N = 143, 500, 1000, 1300
    python -m bench.fan_out --sizes 500
"""

from __future__ import annotations

import argparse
import time

import yaml

from meshc import pipeline
from meshc.emit import naming
from meshc.emit.kubernetes.objects import CONFIG_MAP_MAX_BYTES
from meshc.load import SpecSource


def fan_out_spec(upstreams: int) -> bytes:
    """`hub` calling `upstreams` deployed services, with meshc's defaults (mTLS, JSON access log)."""
    lines = ["apiVersion: meshc.dev/v1alpha1", "kind: Mesh", "metadata:", "  name: demo", "spec:", "  services:",
             "  - name: hub", "    image: ghcr.io/acme/hub:1.0.0", "    port: 8080", "    upstreams:"]
    for i in range(upstreams):
        lines += [f"    - service: svc-{i}", f"      localPort: {10000 + i}"]
    for i in range(upstreams):
        lines += [f"  - name: svc-{i}", "    image: ghcr.io/acme/svc:1.0.0", "    port: 8080"]
    return ("\n".join(lines) + "\n").encode()


def measure(upstreams: int) -> dict[str, object]:
    source = SpecSource("mesh.yaml", fan_out_spec(upstreams))
    started = time.perf_counter()
    checked = pipeline.check(source)
    with_check = time.perf_counter() - started
    limit = pipeline.SIZE_CHECK_FROM_UPSTREAMS
    pipeline.SIZE_CHECK_FROM_UPSTREAMS = 1 << 30   # the same validate without the size check
    try:
        started = time.perf_counter()
        pipeline.check(source)
        without_check = time.perf_counter() - started
    finally:
        pipeline.SIZE_CHECK_FROM_UPSTREAMS = limit
    row: dict[str, object] = {"upstreams": upstreams, "check_s": with_check, "no_check_s": without_check}
    if not checked.ok:
        row["result"] = "E250" if any(d.code == "E250" for d in checked.diagnostics) else "invalid"
        return row
    bundle = pipeline.build_bundle(checked)
    as_written = sum(len(name) + len(bundle.files[naming.envoy_path("hub", name)])
                     for name in (*naming.ENVOY_FILES, *naming.SDS_FILES.values())
                     if naming.envoy_path("hub", name) in bundle.files)
    documents = yaml.load_all(bundle.files[naming.kubernetes_path("hub")], Loader=yaml.CSafeLoader)
    sizes = {d["metadata"]["name"]: sum(len(k) + len(v.encode()) for k, v in d["data"].items())
             for d in documents if d["kind"] == "ConfigMap"}
    row |= {"result": "ok", "one_config_map": as_written, "config_maps": sizes}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[143, 500, 1000, 1300])
    args = parser.parse_args()
    print(f"limit {CONFIG_MAP_MAX_BYTES:,} bytes per ConfigMap")
    for upstreams in args.sizes:
        row = measure(upstreams)
        timing = f"check {row['check_s']:.2f} s vs {row['no_check_s']:.2f} s without the size check"
        if row["result"] != "ok":
            print(f"N={upstreams:5d}  {row['result']}  ({timing})")
            continue
        sizes = row["config_maps"]
        assert isinstance(sizes, dict)
        largest = max(sizes.values())
        print(f"N={upstreams:5d}  as written in one ConfigMap {row['one_config_map']:>10,}  "
              f"built: {len(sizes)} ConfigMap(s), largest {largest:>9,} "
              f"({'fits' if largest <= CONFIG_MAP_MAX_BYTES else 'OVER'})  ({timing})")


if __name__ == "__main__":
    main()
