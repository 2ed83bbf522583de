"""Where commits come from: the object database (never the work tree), remote mirrors, signatures."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshc.diagnostics import MeshcError
from meshc.sync.directory import DirectoryTarget
from meshc.sync.watch_source import GitSource, is_remote, redact
from meshc.sync.watch_trust import KeyringError, TrustedKeyring
from tests.support.gitrepo import AUTHOR_EMAIL, AUTHOR_NAME, GitRepo
from tests.watch.harness import matching, watching
from tests.watch.specs import BROKEN_SPEC, SPEC_PATH, mesh_spec


def seed_record(target: DirectoryTarget) -> str:
    return (target.root / "etcd" / "seed.json").read_text()


def test_the_work_tree_and_checked_out_branch_do_not_matter(mesh_repo: GitRepo, dir_target: DirectoryTarget) -> None:
    mesh_repo.branch("experiment", checkout=True)
    mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-00": "9.9.9"}), "Experiment on another branch")
    mesh_repo.dirty(SPEC_PATH, BROKEN_SPEC)   # uncommitted, on the checked-out branch
    main = mesh_repo.repo.commit("main").hexsha
    with watching(mesh_repo.path, [dir_target]) as watcher:
        watcher.wait("applied", commit=main)
    assert "svc-00:1.0.0" in seed_record(dir_target)


def test_a_remote_url_is_mirrored_and_fetched_each_interval(mesh_repo: GitRepo, tmp_path: Path,
                                                            dir_target: DirectoryTarget) -> None:
    remote = mesh_repo.clone_bare(tmp_path / "remote.git")
    url = f"file://{remote.path}"
    cache = tmp_path / "cache"
    with watching(url, [dir_target], cache_dir=cache) as watcher:
        watcher.wait("applied", commit=mesh_repo.head_sha)
        change = mesh_repo.commit_file(SPEC_PATH, mesh_spec(3, tags={"svc-02": "2.2.0"}), "Bump svc-02")
        mesh_repo.push(remote.path)
        watcher.wait("applied", commit=change)
    assert "svc-02:2.2.0" in seed_record(dir_target)
    mirrors = list(cache.iterdir())
    assert len(mirrors) == 1 and (mirrors[0] / "HEAD").is_file() and not (mirrors[0] / ".git").exists()


def test_credentials_in_the_url_never_reach_the_log(tmp_path: Path, dir_target: DirectoryTarget) -> None:
    url = "https://deploy-bot:s3cr3t-t0ken@127.0.0.1:9/acme/mesh.git"
    assert is_remote(url) and redact(url) == "https://***@127.0.0.1:9/acme/mesh.git"
    with watching(url, [dir_target], cache_dir=tmp_path / "cache") as watcher:
        failure = watcher.wait("source")
        text = watcher.stream.text()
    assert "127.0.0.1:9" in failure["message"]
    assert "s3cr3t" not in text and "deploy-bot" not in text


# -- signatures ----------------------------------------------------------------------------------

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg (GnuPG) is not installed")


class Signer:
    """A signing key in its own GnuPG home, and commits signed with it."""

    def __init__(self, home: Path, email: str) -> None:
        home.mkdir(mode=0o700, parents=True)
        self.home = str(home)
        self._gpg("--passphrase", "", "--quick-gen-key", f"Signer <{email}>", "ed25519", "sign", "never")
        listing = self._gpg("--with-colons", "--list-keys", email).stdout
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["gpg", "--batch", "--homedir", self.home, *args], capture_output=True, text=True,
                              check=True, timeout=60)

    def export(self, path: Path) -> Path:
        path.write_text(self._gpg("--armor", "--export", self.fingerprint).stdout)
        return path

    def commit(self, repo: GitRepo, text: str, message: str) -> str:
        repo.dirty(SPEC_PATH, text)
        repo.repo.git.add("--", SPEC_PATH)
        env = {"GNUPGHOME": self.home, "GIT_AUTHOR_NAME": AUTHOR_NAME, "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
               "GIT_COMMITTER_NAME": AUTHOR_NAME, "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL}
        repo.repo.git.commit("--quiet", "--no-verify", f"--gpg-sign={self.fingerprint}", "-m", message, env=env)
        return repo.head_sha

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"], capture_output=True, check=False)


@pytest.fixture
def signers(tmp_path: Path) -> Iterator[tuple[Signer, Signer]]:
    # GnuPG sockets live in the home: keep its path short.
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"meshc-sign-{os.getpid()}-{tmp_path.name[-12:]}"
    trusted, stranger = Signer(base / "a", "release@acme.invalid"), Signer(base / "b", "someone@else.invalid")
    try:
        yield trusted, stranger
    finally:
        trusted.close()
        stranger.close()
        shutil.rmtree(base, ignore_errors=True)


@needs_gpg
def test_only_commits_signed_by_a_trusted_key_are_applied(mesh_repo: GitRepo, tmp_path: Path,
                                                          dir_target: DirectoryTarget,
                                                          signers: tuple[Signer, Signer]) -> None:
    trusted, stranger = signers
    unsigned = mesh_repo.head_sha
    with TrustedKeyring(str(trusted.export(tmp_path / "trusted.asc"))) as keyring, \
            watching(mesh_repo.path, [dir_target], gnupg_home=keyring.home) as watcher:
        refused = watcher.wait("refused", commit=unsigned)
        signed = trusted.commit(mesh_repo, mesh_spec(3, tags={"svc-01": "7.0.0"}), "Signed release")
        watcher.wait("applied", commit=signed)
        forged = stranger.commit(mesh_repo, mesh_spec(3, tags={"svc-01": "6.6.6"}), "Signed by a stranger")
        untrusted = watcher.wait("refused", commit=forged)
        watcher.wait_passes(2)
        events = watcher.events()
    assert refused["reason"] == "the commit is not signed"
    assert "not in the trusted keyring" in untrusted["reason"]
    assert untrusted["kept"] == signed[:7]
    assert len(matching(events, "applied")) == 1
    assert "svc-01:7.0.0" in seed_record(dir_target)


@needs_gpg
def test_a_keyring_without_keys_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.asc"
    empty.write_text("")
    with pytest.raises(KeyringError, match="no public key|cannot import"):
        TrustedKeyring(str(empty))


def test_source_names_a_missing_branch(mesh_repo: GitRepo) -> None:
    from meshc.sync.watch_source import SourceError

    source = GitSource(str(mesh_repo.path), "release")
    with pytest.raises(SourceError, match="branch release not found"):
        source.poll()
    source.close()


@pytest.mark.parametrize("url", ["https://[::1/mesh.git", "https://bot:secret@[::1/mesh.git"])
def test_a_url_urllib_cannot_take_apart_is_a_usage_error_without_its_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(MeshcError) as refused:
        GitSource(url, "main", tmp_path)
    message = refused.value.diagnostics[0].message
    assert "is not a URL git can fetch from" in message and "secret" not in message
    assert refused.value.exit_code == 2
