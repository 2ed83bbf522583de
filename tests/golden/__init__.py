"""golden/<example>/: the full `meshc build` output of every example, kept in the repository and
compared byte for byte by tests/golden/test_golden.py.

Regenerate after an intended change of output, and review the diff like code:

    python -m tests.golden            # every example
    python -m tests.golden shop grpc  # some of them
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from meshc.bundle import Bundle, read_bundle, write_bundle
from meshc.bundle.store import is_meshc_output
from meshc.load import read_spec_file
from meshc.pipeline import compile

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "golden"
EXAMPLES = ROOT / "examples"
COMMAND = "python -m tests.golden"


def example_names() -> list[str]:
    return sorted(p.parent.name for p in EXAMPLES.glob("*/mesh.yaml"))


def build(name: str) -> Bundle:
    """The example's build output, exactly as `meshc build examples/<name>/mesh.yaml -o OUT` writes it."""
    compiled = compile(read_spec_file(str(EXAMPLES / name / "mesh.yaml")))
    if compiled.bundle is None:
        problems = "\n".join(str(d) for d in compiled.diagnostics)
        raise ValueError(f"examples/{name}/mesh.yaml does not build:\n{problems}")
    return compiled.bundle


def stored(name: str) -> dict[str, bytes]:
    directory = GOLDEN / name
    return dict(read_bundle(directory).files) if directory.is_dir() else {}


@dataclass
class Difference:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def __str__(self) -> str:
        lines = [f"{sign} {path}" for sign, paths in (("+", self.added), ("~", self.changed), ("-", self.removed))
                 for path in paths]
        return "\n".join(lines) or "unchanged"


def difference(expected: dict[str, bytes], actual: dict[str, bytes]) -> Difference:
    """What `actual` (a fresh build) adds, changes and removes compared with `expected` (golden)."""
    return Difference(
        added=sorted(set(actual) - set(expected)),
        changed=sorted(p for p in set(actual) & set(expected) if actual[p] != expected[p]),
        removed=sorted(set(expected) - set(actual)),
    )


def stale_directories() -> list[Path]:
    """golden/<name>/ left from an example that no longer exists."""
    names = set(example_names())
    return sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name not in names) if GOLDEN.is_dir() else []


def regenerate(names: list[str] | None = None) -> dict[str, Difference]:
    """Rewrite golden/<name>/ from a fresh build (atomically, like `meshc build`); report what moved."""
    chosen = names or example_names()
    unknown = sorted(set(chosen) - set(example_names()))
    if unknown:
        raise ValueError(f"no such example: {', '.join(unknown)}")
    report = {}
    for name in chosen:
        bundle = build(name)
        report[name] = difference(stored(name), dict(bundle.files))
        write_bundle(bundle, GOLDEN / name)
    if names is None:
        for directory in stale_directories():
            if is_meshc_output(directory):
                report[directory.name] = difference(stored(directory.name), {})
                shutil.rmtree(directory)
    return report
