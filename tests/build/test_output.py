"""`meshc build -o OUT`: exit codes, and OUT replaced atomically or not touched at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshc.bundle import Bundle, write_bundle
from meshc.emit import naming
from tests.build.tree import compiled, files, meshc, snapshot

BROKEN = """\
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  services:
  - name: web
    image: example.com/web:1
    port: 8080
    upstreams: [{service: nowhere, localPort: 7001}]
"""


@pytest.fixture
def shop(spec_paths: dict[str, Path]) -> Path:
    return spec_paths["shop"]


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    return path


def leftovers(parent: Path, out: Path) -> list[str]:
    """Staging directories a build leaves beside OUT (there must be none)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_build_writes_exactly_the_bundle(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    result = meshc("build", str(shop), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert files(out) == dict(compiled(shop).files)
    assert f"wrote {len(files(out))} files to {out}" in result.stderr
    assert leftovers(out.parent, out) == []


def test_an_invalid_spec_exits_1_and_leaves_a_previous_output_exactly_as_it_was(
        shop: Path, broken: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert meshc("build", str(shop), "-o", str(out)).returncode == 0
    before = snapshot(out)
    result = meshc("build", str(broken), "-o", str(out))
    assert result.returncode == 1
    assert "error:" in result.stderr and "[E201]" in result.stderr
    assert f"{out} was not changed" in result.stderr
    assert snapshot(out) == before
    assert leftovers(tmp_path, out) == []


def test_an_invalid_spec_creates_nothing(broken: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert meshc("build", str(broken), "-o", str(out)).returncode == 1
    assert list(tmp_path.iterdir()) == [broken]


def test_warnings_under_strict_fail_the_build_and_write_nothing(spec_paths: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = meshc("build", str(spec_paths["synthetic"]), "-o", str(out), "--strict")
    assert result.returncode == 1 and "warning:" in result.stderr
    assert not out.exists()
    assert meshc("build", str(spec_paths["synthetic"]), "-o", str(out)).returncode == 0


def test_a_missing_spec_is_an_io_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = meshc("build", str(tmp_path / "absent.yaml"), "-o", str(out))
    assert result.returncode == 2 and "no such file" in result.stderr
    assert not out.exists()


def test_a_directory_that_is_not_a_meshc_output_is_refused(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("do not lose me")
    (out / "manifest.json").write_text('{"kind": "SomethingElse"}')
    before = snapshot(out)
    result = meshc("build", str(shop), "-o", str(out))
    assert result.returncode == 2
    assert "not empty and does not hold a previous meshc build" in result.stderr
    assert snapshot(out) == before
    assert leftovers(tmp_path, out) == []


def test_a_file_in_the_way_is_refused(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    result = meshc("build", str(shop), "-o", str(out))
    assert result.returncode == 2 and "not a directory" in result.stderr
    assert out.read_text() == "a file"


def test_a_file_where_a_parent_directory_should_be_is_refused_by_name(shop: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "build"
    blocker.write_text("a file")
    result = meshc("build", str(shop), "-o", str(blocker / "deep" / "out"))
    assert result.returncode == 2, result.stderr
    assert f"{blocker} is not a directory" in result.stderr and "Traceback" not in result.stderr
    assert blocker.read_text() == "a file" and sorted(tmp_path.iterdir()) == [blocker]


def test_an_empty_directory_is_filled(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert meshc("build", str(shop), "-o", str(out)).returncode == 0
    assert files(out) == dict(compiled(shop).files)


def test_rebuilding_replaces_a_previous_output_completely(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert meshc("build", str(shop), "-o", str(out)).returncode == 0
    (out / "kubernetes" / "stray.yaml").write_text("left by hand")
    without_catalog = tmp_path / "mesh.yaml"
    without_catalog.write_text(_drop_catalog(shop.read_text()))
    assert meshc("build", str(without_catalog), "-o", str(out)).returncode == 0
    written = files(out)
    assert written == dict(compiled(without_catalog).files)
    assert not any("catalog" in path for path in written)
    assert not (out / "envoy" / "catalog").exists() and not (out / "kubernetes" / "stray.yaml").exists()
    assert leftovers(tmp_path, out) == []


def test_a_write_that_fails_half_way_changes_nothing(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_bundle(compiled(shop), out)
    before = snapshot(out)
    # A file and a directory of the same name: the second write fails after the first succeeded.
    impossible = Bundle({"manifest.json": b"{}", "kubernetes/a.yaml": b"{}\n", "kubernetes/a.yaml/b.yaml": b"{}\n"})
    with pytest.raises(OSError):
        write_bundle(impossible, out)
    assert snapshot(out) == before
    assert leftovers(tmp_path, out) == []


def test_the_output_directory_is_not_private_like_a_temporary_one(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_bundle(compiled(shop), out)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / naming.MANIFEST_PATH).is_file()


def _drop_catalog(text: str) -> str:
    """The shop example without its catalog service (and frontend's upstream to it)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("  - name: catalog"))
    end = next(i for i, line in enumerate(lines) if line.startswith("  - name: payments"))
    kept = lines[:start] + lines[end:]
    up = next(i for i, line in enumerate(kept) if "- service: catalog" in line)
    return "".join(kept[:up] + kept[up + 4:])


def test_an_output_reached_through_a_symlink_is_replaced_where_it_lives(shop: Path, spec_paths: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    real = tmp_path / "builds" / "current"
    assert meshc("build", str(shop), "-o", str(real)).returncode == 0
    link = tmp_path / "out"
    link.symlink_to(real)
    assert meshc("build", str(spec_paths["canary"]), "-o", str(link)).returncode == 0
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert files(real) == dict(compiled(spec_paths["canary"]).files)
    assert leftovers(tmp_path, link) == [] and leftovers(real.parent, real) == []
