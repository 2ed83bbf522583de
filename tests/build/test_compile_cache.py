"""Compiled commits kept on disk (meshc.compile_cache): what is loaded is what a compile gives,
and only this meshc's compilation of the same bytes with the same options is ever loaded."""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import os
import pickle
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from meshc import compile_cache, pipeline
from meshc.diagnostics import MeshcError
from meshc.emit.etcd import seed
from meshc.load import SpecSource
from meshc.pipeline import BuildOptions, Compiled, check, compile
from meshc.resolve import ir
from tests.build.test_incremental import BASES, EDITS
from tests.build.test_incremental import _source as edit_source
from tests.sync.specs import chain_spec

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("MESHC_CACHE_DIR", str(directory))
    return directory


def source(services: int = 5, revision: str | None = "a" * 40, **changes: object) -> SpecSource:
    text = yaml.safe_dump(chain_spec(services, **changes), sort_keys=False)   # type: ignore[arg-type]
    return SpecSource("mesh.yaml", text.encode(), revision=revision)


def compiled(spec: SpecSource, options: BuildOptions = BuildOptions(), base: Compiled | None = None) -> Compiled:
    result = compile(spec, options, base=base)
    assert result.bundle is not None, [str(d) for d in result.diagnostics]
    return result


def files(result: Compiled | None) -> dict[str, bytes]:
    assert result is not None and result.bundle is not None
    return {path: result.bundle.files[path] for path in result.bundle.files}


def test_what_is_loaded_is_what_was_compiled(cache_dir: Path) -> None:
    spec = source()
    original = compiled(spec)
    compile_cache.store(original)

    loaded = compile_cache.load(spec, BuildOptions())

    assert loaded is not None and loaded.checked.mesh is not None
    assert loaded.checked.mesh == original.checked.mesh
    assert [d.span for d in loaded.checked.mesh.services] == [d.span for d in original.checked.mesh.services]
    assert loaded.diagnostics == original.diagnostics
    assert files(loaded) == files(original)
    assert loaded.checked.source is spec
    assert [p.name for p in cache_dir.glob("compiled-*")] == [compile_cache.entry_path(spec, BuildOptions()).name]
    assert oct(compile_cache.entry_path(spec, BuildOptions()).stat().st_mode & 0o777) == "0o600"


def test_a_commit_built_from_a_loaded_one_is_the_full_build() -> None:
    before = source(6, revision="b" * 40)
    after = source(6, revision="c" * 40, replicas={"svc-002": 3}, images={"svc-004": "registry.example/x:2"})
    compile_cache.store(compiled(before))
    loaded = compile_cache.load(before, BuildOptions())
    assert loaded is not None

    incremental = compiled(after, base=loaded)

    assert files(incremental) == files(compiled(after))


def test_a_commit_built_from_a_kept_one_renders_only_what_can_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    before = source(8, revision="b" * 40)
    after = source(8, revision="c" * 40, images={"svc-005": "registry.example/x:2"})
    compile_cache.store(compiled(before))
    kept = compile_cache.load(before, BuildOptions())
    assert kept is not None and kept.checked.mesh is not None
    rendered: list[object] = []
    real = compile_cache.iter_files

    def counting(*args: object, **kwargs: object) -> object:
        rendered.append(kwargs.get("only"))
        return real(*args, **kwargs)     # type: ignore[arg-type]

    monkeypatch.setattr(compile_cache, "iter_files", counting)    # files read (OnDemandFiles)
    checked = compile(after).checked

    with monkeypatch.context() as building:
        building.setattr(pipeline, "iter_files", counting)        # files built (pipeline.affected_files)
        built = compile_cache.build_from(checked, BuildOptions(), kept)

    assert rendered == [frozenset({"svc-005"})]          # the changed service (and the whole-mesh files)
    assert files(built) == files(compiled(after))        # every other service rendered when read, the same bytes
    assert sorted(map(sorted, rendered[1:])) == sorted([name] for name in (  # type: ignore[arg-type]
        f"svc-{n:03d}" for n in range(8) if n != 5))


def test_a_kept_entry_whose_files_disagree_with_its_manifest_is_refused() -> None:
    """Files are rendered again from the kept IR and checked against the kept manifest: an entry
    whose IR is another commit's (here: written under this commit's name) stops the run."""
    spec, other = source(4), source(4, replicas={"svc-002": 2})
    lie = compiled(other)
    assert lie.checked.mesh is not None and lie.bundle is not None
    truth = compiled(spec)
    assert truth.bundle is not None
    compile_cache.store(Compiled(dataclasses.replace(truth.checked, mesh=lie.checked.mesh), truth.bundle,
                                 truth.options))
    loaded = compile_cache.load(spec, BuildOptions())
    assert loaded is not None and loaded.bundle is not None

    with pytest.raises(MeshcError, match="differs from its manifest entry"):
        loaded.bundle.files["kubernetes/svc-002.yaml"]


def test_warnings_are_kept_whole() -> None:
    """Every warning of the check, also those a run's --ignore left out: the next run may not ignore them."""
    mesh = chain_spec(3)
    mesh["spec"]["services"][0]["upstreams"][0] |= {"timeout": "1s", "retries": {"attempts": 3, "perTryTimeout": "1s"}}
    spec = SpecSource("mesh.yaml", yaml.safe_dump(mesh, sort_keys=False).encode(), revision="e" * 40)
    original = compiled(spec)
    assert [d.code for d in original.diagnostics if not d.is_error]     # retries that cannot all happen
    compile_cache.store(original)

    loaded = compile_cache.load(spec, BuildOptions())

    assert loaded is not None and loaded.diagnostics == original.diagnostics


@pytest.mark.parametrize("other", [
    pytest.param(lambda s, o: (SpecSource(s.name, s.data + b"\n", s.revision), o), id="other bytes"),
    pytest.param(lambda s, o: (SpecSource("other/mesh.yaml", s.data, s.revision), o), id="other path"),
    pytest.param(lambda s, o: (s, BuildOptions(config_dir="/srv/envoy")), id="other options"),
    pytest.param(lambda s, o: (s, BuildOptions(envoy_hosts={"svc-001": "10.0.0.1"})), id="other hosts"),
])
def test_only_the_same_bytes_and_options_are_loaded(other: object) -> None:
    spec, options = source(), BuildOptions()
    compile_cache.store(compiled(spec, options))
    other_spec, other_options = other(spec, options)    # type: ignore[operator]

    assert compile_cache.load(other_spec, other_options) is None
    assert compile_cache.load(spec, options) is not None


def test_another_commit_with_the_same_spec_loads_it_naming_itself() -> None:
    """A commit that leaves the spec as it was (it changes other files, or reverts): the kept
    compilation of the same bytes, with a manifest naming the new commit, as a build of it gives."""
    spec = source(revision="a" * 40)
    compile_cache.store(compiled(spec))
    same = SpecSource(spec.name, spec.data, revision="d" * 40)

    loaded = compile_cache.load(same, BuildOptions())

    assert loaded is not None and loaded.checked.source is same
    assert files(loaded) == files(compiled(same))
    assert loaded.bundle is not None and loaded.bundle.manifest["source"]["revision"] == "d" * 40
    assert compile_cache.load(spec, BuildOptions()) is not None      # and the first commit still loads


def test_a_spec_synced_from_a_file_is_found_by_its_name_and_digest() -> None:
    """etcd records a spec file's sha256, not its bytes: the entry holds them, so the applied
    spec's compilation is found from its name and that digest, as a compile of it gives."""
    spec = source(revision=None)
    digest = hashlib.sha256(spec.data).hexdigest()
    compile_cache.store(compiled(spec))

    loaded = compile_cache.load_applied(spec.name, digest, BuildOptions())

    assert loaded is not None and loaded.checked.source == spec
    assert files(loaded) == files(compiled(spec))
    assert loaded.bundle is not None and loaded.bundle.manifest["source"]["digest"] == digest
    assert compile_cache.load_applied("other.yaml", digest, BuildOptions()) is None
    assert compile_cache.load_applied(spec.name, "a" * 40, BuildOptions()) is None          # a commit, not bytes
    assert compile_cache.load_applied(spec.name, digest, BuildOptions(config_dir="/srv/envoy")) is None


def test_an_entry_holding_other_bytes_than_its_digest_is_refused() -> None:
    spec = source(revision=None)
    digest = hashlib.sha256(spec.data).hexdigest()
    compile_cache.store(compiled(spec))
    path = compile_cache.entry_path(spec, BuildOptions())
    entry = pickle.loads(path.read_bytes())
    path.write_bytes(compile_cache._encoded((*entry[:3], source(4).data, *entry[4:])))   # the key left as it was

    assert compile_cache.load_applied(spec.name, digest, BuildOptions()) is None
    assert compile_cache.load(spec, BuildOptions()) is None


def test_another_meshc_finds_nothing(tmp_path: Path) -> None:
    """The key holds a digest of every meshc module's source: a meshc changed anywhere, even at
    the same version, looks for other files."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "meshc", copy / "meshc", ignore=shutil.ignore_patterns("__pycache__"))
    script = "from meshc import compile_cache; print(compile_cache.__file__, compile_cache.code_digest())"

    def digest(tree: Path) -> str:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        module, value = subprocess.run([sys.executable, "-c", script], env=env, cwd=tree, capture_output=True,
                                       text=True, check=True).stdout.split()
        assert Path(module).is_relative_to(tree)
        return value

    same = digest(copy)
    naming = copy / "meshc" / "emit" / "naming.py"
    naming.write_text(naming.read_text() + "\n# another meshc\n")

    assert same == compile_cache.code_digest()
    assert digest(copy) != same


def test_a_damaged_file_is_ignored_and_replaced() -> None:
    spec = source()
    path = compile_cache.entry_path(spec, BuildOptions())
    path.parent.mkdir(parents=True)
    for damage in (b"", b"not a pickle", b"\x80\x05K\x01."):     # empty, garbage, a pickle of something else
        path.write_bytes(damage)
        path.chmod(0o600)
        assert compile_cache.load(spec, BuildOptions()) is None

    compile_cache.store(compiled(spec))
    assert compile_cache.load(spec, BuildOptions()) is not None


def test_a_truncated_file_is_ignored() -> None:
    spec = source()
    compile_cache.store(compiled(spec))
    path = compile_cache.entry_path(spec, BuildOptions())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    assert compile_cache.load(spec, BuildOptions()) is None


def test_an_entry_under_another_name_is_ignored() -> None:
    """A file moved or copied to another entry's name says whose it is, and is not taken."""
    first, second = source(4), source(5)
    compile_cache.store(compiled(first))
    shutil.copy(compile_cache.entry_path(first, BuildOptions()), compile_cache.entry_path(second, BuildOptions()))

    assert compile_cache.load(second, BuildOptions()) is None


def test_a_file_others_could_write_is_not_read() -> None:
    spec = source()
    compile_cache.store(compiled(spec))
    path = compile_cache.entry_path(spec, BuildOptions())
    for mode in (0o620, 0o602):
        path.chmod(mode)
        assert compile_cache.load(spec, BuildOptions()) is None
    path.chmod(0o600)
    assert compile_cache.load(spec, BuildOptions()) is not None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_a_file_of_another_user_is_not_read() -> None:
    spec = source()
    compile_cache.store(compiled(spec))
    os.chown(compile_cache.entry_path(spec, BuildOptions()), 4242, 4242)

    assert compile_cache.load(spec, BuildOptions()) is None


def test_a_directory_that_cannot_be_written_costs_only_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MESHC_CACHE_DIR", str(blocker / "cache"))
    spec = source()

    compile_cache.store(compiled(spec))      # does not raise

    assert compile_cache.load(spec, BuildOptions()) is None


def test_the_least_recently_used_entries_go(cache_dir: Path) -> None:
    specs = [source(3 + n, revision=f"{n:040x}") for n in range(compile_cache.KEPT + 2)]
    compile_cache.store(compiled(specs[0]))
    for spec in specs[1:]:
        os.utime(compile_cache.entry_path(specs[0], BuildOptions()), (0, 0))   # as if long unused...
        assert compile_cache.load(specs[0], BuildOptions()) is not None       # ...until read again
        compile_cache.store(compiled(spec))

    kept = {p.name for p in cache_dir.glob("compiled-*")}
    assert len(kept) == compile_cache.KEPT
    assert compile_cache.entry_path(specs[0], BuildOptions()).name in kept
    assert compile_cache.entry_path(specs[1], BuildOptions()).name not in kept


@pytest.mark.parametrize(("name", "text"), BASES, ids=[name for name, _ in BASES])
def test_a_commit_built_from_a_kept_one_is_the_full_build_over_random_edits(name: str, text: str) -> None:
    """build_from (the services that can differ rendered, etcd's seed carried over for the rest,
    the others rendered when read) against a full build, for random edits of every kind."""
    base = SpecSource("mesh.yaml", text.encode(), revision="b" * 40)
    compile_cache.store(compiled(base))
    kept = compile_cache.load(base, BuildOptions())
    assert kept is not None
    original = yaml.safe_load(text)
    rng = random.Random(name)
    tried: set[str] = set()
    for _ in range(16):
        edited = copy.deepcopy(original)
        edits = [edit for edit in rng.sample(EDITS, rng.randint(1, 2)) if edit(edited, rng)]
        checked = check(edit_source(edited))
        if not edits or not checked.ok:
            continue    # the edit does not apply to this mesh, or made it invalid: nothing to compare
        tried.update(edit.__name__ for edit in edits)

        built = compile_cache.build_from(checked, BuildOptions(), kept)

        assert files(built) == files(compiled(edit_source(edited))), [edit.__name__ for edit in edits]
    assert len(tried) >= 5, tried    # the edits did reach the mesh: this compared something


def test_etcd_records_of_unchanged_services_are_carried_over(monkeypatch: pytest.MonkeyPatch) -> None:
    before = source(8, revision="b" * 40)
    after = source(8, revision="c" * 40, images={"svc-005": "registry.example/x:2"}, replicas={"svc-002": 4})
    compile_cache.store(compiled(before))
    kept = compile_cache.load(before, BuildOptions())
    assert kept is not None
    checked = compile(after).checked
    rendered: list[str] = []
    real = seed.service_record

    def counting(mesh: ir.Mesh, service: ir.Service) -> dict[str, object]:
        rendered.append(service.name)
        return real(mesh, service)

    monkeypatch.setattr(seed, "service_record", counting)

    built = compile_cache.build_from(checked, BuildOptions(), kept)

    assert sorted(rendered) == ["svc-002", "svc-005"]
    assert built.bundle is not None
    monkeypatch.undo()
    assert built.bundle.files["etcd/seed.json"] == files(compiled(after))["etcd/seed.json"]


def test_a_detached_store_is_there_for_the_next_run(cache_dir: Path) -> None:
    spec = source(revision="f" * 40)
    original = compiled(spec)

    compile_cache.store_detached(original)

    loaded = compile_cache.load(spec, BuildOptions())      # waits for the writer if it is not done
    assert loaded is not None and files(loaded) == files(original)
    compile_cache.settle(cache_dir)
    assert [p.name for p in cache_dir.glob("compiled-*")] == [compile_cache.entry_path(spec, BuildOptions()).name]


def test_a_run_waits_for_the_entry_another_is_writing(cache_dir: Path) -> None:
    """The writer holds the entry's `.writing` file locked until the entry is in place: a reader
    that comes meanwhile waits, then loads it, instead of compiling the commit again."""
    spec = source(revision="9" * 40)
    original = compiled(spec)
    path = compile_cache.entry_path(spec, BuildOptions())
    cache_dir.mkdir()
    writing = path.with_suffix(".writing")
    with writing.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results: list[Compiled | None] = []
        reader = threading.Thread(target=lambda: results.append(compile_cache.load(spec, BuildOptions())))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not results             # waiting, not giving up
        compile_cache.store(original)
        writing.unlink()
    reader.join(30)

    assert results and results[0] is not None and files(results[0]) == files(original)


def test_a_writer_that_ends_between_a_miss_and_the_look_for_it_leaves_its_entry_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader misses the entry, then the writer puts it in place and removes its `.writing`
    file before the reader looks for that file: the reader finds no writer to wait for, and must
    still load the entry rather than compile the commit again."""
    spec = source(revision="8" * 40)
    original = compiled(spec)
    first_read = compile_cache._read
    reads: list[Compiled | None] = []

    def missed_while_the_writer_ends(*args: object) -> Compiled | None:
        if not reads:
            reads.append(None)
            compile_cache.store(original)       # the writer ends: entry in place, no `.writing` file
            return None
        reads.append(first_read(*args))         # type: ignore[arg-type]
        return reads[-1]

    monkeypatch.setattr(compile_cache, "_read", missed_while_the_writer_ends)

    loaded = compile_cache.load(spec, BuildOptions())

    assert loaded is not None and files(loaded) == files(original)
    assert len(reads) == 2
