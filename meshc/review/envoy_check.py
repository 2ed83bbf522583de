"""Ask a real Envoy whether it accepts a build's sidecars (`meshc build --verify-envoy`).

`envoy --mode validate -c bootstrap.yaml` is not enough: validate mode checks that the bootstrap's
file-based cds/lds paths exist, but never reads them, so a cluster with an unknown lb_policy
still prints OK. Folding each sidecar's cds/lds resources into the bootstrap's static_resources
gives a file in which validate mode checks every cluster and listener the sidecar would load.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from meshc.emit import naming

ENVOY_ENV = "MESHC_ENVOY"          # an Envoy binary to use instead of the one on PATH
VALIDATE_TIMEOUT_S = 120


@dataclass(frozen=True)
class Rejection:
    service: str
    message: str       # what Envoy said


def find_envoy() -> str | None:
    """$MESHC_ENVOY, else `envoy` on PATH, else None."""
    chosen = os.environ.get(ENVOY_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return shutil.which("envoy")


def static_bootstrap(bootstrap: bytes, cds: bytes, lds: bytes, local_dir: str | None = None,
                     local_files: Iterable[str] = ()) -> dict[str, Any]:
    """One sidecar's bootstrap with the resources of its cds/lds files made static.

    The files are JSON (meshc.render), which is also how Envoy reads them. Each resource loses its
    `@type`, which a DiscoveryResponse needs and a static resource does not have. The sidecar's
    other files (file-based SDS, read from its config directory) stay file-based: a
    `path_config_source` naming one of `local_files` is pointed at the copy in `local_dir`,
    because validate mode insists that such paths exist (it does not read them)."""
    config: dict[str, Any] = json.loads(bootstrap)
    static = config.pop("static_resources", {})
    config.pop("dynamic_resources", None)

    def plain(data: bytes) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "@type"} for r in json.loads(data).get("resources", [])]

    config["static_resources"] = {
        "listeners": static.get("listeners", []) + plain(lds),
        "clusters": static.get("clusters", []) + plain(cds),
    }
    if local_dir is not None:
        _redirect_file_sources(config, local_dir, frozenset(local_files))
    return config


def _redirect_file_sources(node: Any, local_dir: str, names: frozenset[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _redirect_file_sources(item, local_dir, names)
    elif isinstance(node, dict):
        source = node.get("path_config_source")
        if isinstance(source, dict) and posixpath.basename(str(source.get("path", ""))) in names:
            source["path"] = os.path.join(local_dir, posixpath.basename(source["path"]))
            if "watched_directory" in source:
                source["watched_directory"] = {"path": local_dir}
        for value in node.values():
            _redirect_file_sources(value, local_dir, names)


def _other_files(files: Mapping[str, bytes], service: str) -> dict[str, bytes]:
    """A sidecar's files besides bootstrap, cds and lds (file-based SDS), by file name."""
    prefix = f"envoy/{service}/"
    return {path[len(prefix):]: data for path, data in files.items()
            if path.startswith(prefix) and "/" not in path[len(prefix):]
            and path[len(prefix):] not in naming.ENVOY_FILES}


def sidecars(files: Mapping[str, bytes]) -> list[str]:
    """The services with sidecar files in a build, sorted."""
    found = {path.split("/")[1] for path in files if path.startswith("envoy/") and path.count("/") == 2}
    return sorted(s for s in found if all(naming.envoy_path(s, f) in files for f in naming.ENVOY_FILES))


def validate_sidecars(files: Mapping[str, bytes], envoy: str, *, jobs: int = 2,
                      progress: Callable[[int, int], None] | None = None) -> list[Rejection]:
    """Run `envoy --mode validate` on every sidecar's folded bootstrap; what Envoy rejected."""
    services = sidecars(files)
    with tempfile.TemporaryDirectory(prefix="meshc-verify-envoy-") as scratch:
        def one(service: str) -> Rejection | None:
            local_dir = os.path.join(scratch, service)
            os.makedirs(local_dir)
            others = _other_files(files, service)
            for name, data in others.items():
                with open(os.path.join(local_dir, name), "wb") as handle:
                    handle.write(data)
            bootstrap, cds, lds = (files[naming.envoy_path(service, f)] for f in naming.ENVOY_FILES)
            config = static_bootstrap(bootstrap, cds, lds, local_dir=local_dir, local_files=others)
            path = os.path.join(scratch, f"{service}.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(config, handle)
            return _validate(envoy, path, service)

        rejections: list[Rejection] = []
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for done, result in enumerate(pool.map(one, services), start=1):
                if result is not None:
                    rejections.append(result)
                if progress is not None:
                    progress(done, len(services))
    return rejections


def _validate(envoy: str, path: str, service: str) -> Rejection | None:
    try:
        result = subprocess.run([envoy, "--mode", "validate", "-c", path, "-l", "error"], capture_output=True,
                                text=True, timeout=VALIDATE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Rejection(service, f"could not run {envoy}: {exc}")
    if result.returncode == 0:
        return None
    output = (result.stderr + result.stdout).replace(f"'{path}'", "(cds and lds folded into the bootstrap)")
    return Rejection(service, _explanation(output))


def _explanation(output: str) -> str:
    """Envoy's reason, without its log prefixes and the usage text it adds."""
    lines = [line.rsplit("] ", 1)[-1].strip() for line in output.splitlines() if line.strip()]
    useful = [line for line in lines if line and not line.startswith(("USAGE", "Where:", "--", "-"))]
    return "; ".join(dict.fromkeys(useful))[:2000] or "rejected without a message"


def describe(rejections: Iterable[Rejection]) -> list[str]:
    return [f"envoy/{r.service}: Envoy rejects this sidecar: {r.message}" for r in rejections]
