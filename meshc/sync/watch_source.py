"""Where `meshc watch` finds commits: a local repository, or a bare mirror of a remote URL.

A local repository is read through its object database only (refs and objects), never its work
tree: whatever is checked out or edited there does not matter. A remote URL is mirrored into a
bare repository in a cache directory and fetched on every poll. gitpython is imported lazily.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from meshc.diagnostics import MeshcError, error
from meshc.load.git import GitSpecReader
from meshc.load.source import SpecSource
from meshc.sync.scrub import scrub

FETCH_TIMEOUT = 120.0
# Git must never stop to ask for a password or read the user's config that could sign or rewrite.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
# Credentials of a URL reach `git fetch` through the environment, never its command line (which
# every local user can read in /proc/<pid>/cmdline): a credential helper, set through
# GIT_CONFIG_COUNT/KEY/VALUE, answers git's `get` with these two variables. The helper's own
# command line holds no secret either.
_USERNAME_VAR, _PASSWORD_VAR = "MESHC_GIT_USERNAME", "MESHC_GIT_PASSWORD"
_CREDENTIAL_HELPER = ('!f() { test "$1" = get || exit 0; printf "username=%s\\npassword=%s\\n" '
                      f'"${_USERNAME_VAR}" "${_PASSWORD_VAR}"; }}; f')
_REMOTE_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|[^/\s:]+@[^/\s:]+:)")


class SourceError(Exception):
    """The repository cannot be read or fetched right now (network, auth, missing branch)."""


class SignatureError(Exception):
    """A commit is not signed by a key of the trusted keyring."""


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:7]


def redact(text: str) -> str:
    """Hide `user:token@` in URLs (and other secret-looking text): credentials never reach logs,
    status or errors."""
    return scrub(text)


def split_credentials(url: str, environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The URL without `user:password@`, and the environment that hands those to git instead.
    A URL without credentials uses MESHC_GIT_USERNAME/MESHC_GIT_PASSWORD when they are set."""
    parts = urlsplit(url)
    environ = os.environ if environ is None else environ
    if "://" not in url or (parts.username is None and parts.password is None):
        if environ.get(_PASSWORD_VAR) and "://" in url:
            return url, _helper_env(environ.get(_USERNAME_VAR) or "git", environ[_PASSWORD_VAR])
        return url, {}
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    public = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return public, _helper_env(unquote(parts.username or ""), unquote(parts.password or ""))


def _helper_env(username: str, password: str) -> dict[str, str]:
    return {
        _USERNAME_VAR: username, _PASSWORD_VAR: password,
        "GIT_CONFIG_COUNT": "2",
        # an empty helper first: no helper of the user's config is asked (or told) anything
        "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": "credential.helper", "GIT_CONFIG_VALUE_1": _CREDENTIAL_HELPER,
    }


def is_remote(location: str) -> bool:
    """`https://...`, `ssh://...`, `git@host:org/repo` are remote; an existing path or file:// is too."""
    if os.path.isdir(location):
        return False
    return bool(_REMOTE_URL.match(location))


def _common_dir(path: Path) -> Path:
    """Where a repository keeps its branches: `.git` of a work tree (the common directory of a
    linked worktree), or the repository itself when bare."""
    dot_git = path / ".git"
    if dot_git.is_file():
        text = dot_git.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            dot_git = (path / text.removeprefix("gitdir:").strip()).resolve()
    if not dot_git.is_dir():
        return path
    common = dot_git / "commondir"
    if common.is_file():
        return (dot_git / common.read_text(errors="replace").strip()).resolve()
    return dot_git


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "meshc" / "mirrors"


class GitSource:
    """The head of one branch, the commits it names, and the spec blob at each of them."""

    def __init__(self, location: str, branch: str, cache_dir: Path | None = None) -> None:
        self.location = location
        self.branch = branch
        self.remote = is_remote(location)
        self._cache_dir = cache_dir or default_cache_dir()
        try:
            self._repo_path = self._mirror_path() if self.remote else location
        except ValueError:   # urllib cannot take it apart: an unclosed [IPv6 literal, a port out of range
            shown = re.sub(r"//[^/]*@", "//", location)
            raise MeshcError([error("E001", f"--repo {shown}: is not a URL git can fetch from", None)], 2) from None
        self._reader: GitSpecReader | None = None
        self._repo: Any = None
        self._ref_files: tuple[str, str] | None = None   # the loose ref and packed-refs of the branch

    @property
    def display(self) -> str:
        return redact(self.location)

    @property
    def repo_path(self) -> str:
        """The repository actually read: the local path, or the bare mirror of the URL."""
        return str(self._repo_path)

    # -- polling -----------------------------------------------------------------------------
    def ref_stamp(self) -> tuple[tuple[int, int, int] | None, ...] | None:
        """For a local repository, a cheap fingerprint of the files a new commit on the branch
        changes (its loose ref and packed-refs): when it moves, the branch may have moved, and the
        loop polls at once instead of at the next interval. None for a URL (a fetch is needed)."""
        if self.remote:
            return None
        if self._ref_files is None:     # looked up once: this runs ten times a second while idle
            git_dir = _common_dir(Path(self.location))
            self._ref_files = (str(git_dir / "refs" / "heads" / self.branch), str(git_dir / "packed-refs"))
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._ref_files:
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append(None)
                continue
            stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        return tuple(stamps)

    def poll(self) -> Commit:
        """Fetch (for a URL) and return the commit the branch names now."""
        if self.remote:
            self._fetch()
        try:
            reader = self._open()
        except MeshcError as exc:  # the repository went away or is not one (any more)
            raise SourceError("; ".join(d.message for d in exc.diagnostics)) from None
        try:
            sha = reader.resolve(f"refs/heads/{self.branch}")
        except MeshcError:
            raise SourceError(f"branch {self.branch} not found in {self.display}") from None
        return Commit(sha, self._subject(sha))

    def read_spec(self, commit: Commit, spec_path: str) -> SpecSource:
        """The spec blob at a commit; raises MeshcError (with diagnostics) when it is not there."""
        return self._open().read(commit.sha, spec_path)

    def parent_specs(self, commit: Commit, spec_path: str) -> list[SpecSource]:
        """The spec at each parent of a commit that has one (to see what it changed from)."""
        reader = self._open()
        specs = []
        for parent in reader.parents(commit.sha):
            try:
                specs.append(reader.read(parent, spec_path))
            except MeshcError:
                continue
        return specs

    def verify_signature(self, commit: Commit, gnupg_home: str) -> None:
        """`git verify-commit` with the trusted keyring; raises SignatureError when it fails."""
        import git

        repo = self._git_repo()
        env = {**_GIT_ENV, "GNUPGHOME": gnupg_home}
        try:
            repo.git.verify_commit("--raw", commit.sha, env=env)
        except git.GitCommandError as exc:
            raise SignatureError(_signature_problem(str(exc.stderr or ""))) from None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    # -- internals ---------------------------------------------------------------------------
    def _open(self) -> GitSpecReader:
        if self._reader is None:
            if self.remote and not (Path(self._repo_path) / "HEAD").exists():
                self._fetch()
            self._reader = GitSpecReader(str(self._repo_path))
        return self._reader

    def _git_repo(self) -> Any:
        if self._repo is None:
            import git

            self._open()  # creates the mirror if needed, and reports a bad path as MeshcError
            self._repo = git.Repo(self.repo_path, search_parent_directories=False)
        return self._repo

    def _subject(self, sha: str) -> str:
        message = str(self._git_repo().commit(sha).message)
        return message.strip().splitlines()[0] if message.strip() else ""

    def _mirror_path(self) -> Path:
        public, _ = split_credentials(self.location)   # a new token keeps the same mirror
        digest = hashlib.sha256(public.encode()).hexdigest()[:16]
        tail = re.sub(r"[^A-Za-z0-9._-]", "_", public.rstrip("/").rsplit("/", 1)[-1])[:40]
        return self._cache_dir / f"{tail}-{digest}.git"

    def _fetch(self) -> None:
        """Bring the mirror's branch to the remote's, creating the bare mirror on first use."""
        mirror = Path(self._repo_path)
        if not (mirror / "HEAD").exists():
            self._init_mirror(mirror)
        refspec = f"+refs/heads/{self.branch}:refs/heads/{self.branch}"
        url, credentials = split_credentials(self.location)
        self._git(["--git-dir", str(mirror), "fetch", "--quiet", "--no-tags", "--prune", url, refspec], credentials)

    def _init_mirror(self, mirror: Path) -> None:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{mirror.name}.", dir=mirror.parent))
        try:
            self._git(["init", "--quiet", "--bare", str(staging)])
            os.rename(staging, mirror)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _git(self, argv: list[str], credentials: dict[str, str] | None = None) -> None:
        env = {**os.environ, **_GIT_ENV, **(credentials or {})}
        try:
            subprocess.run(["git", *argv], env=env, capture_output=True, text=True,
                           timeout=FETCH_TIMEOUT, check=True, stdin=subprocess.DEVNULL)
        except subprocess.CalledProcessError as exc:
            raise SourceError(f"git fetch from {self.display} failed: {redact(exc.stderr.strip())}") from None
        except subprocess.TimeoutExpired:
            raise SourceError(f"git fetch from {self.display} timed out after {FETCH_TIMEOUT:.0f}s") from None
        except OSError as exc:
            raise SourceError(f"cannot run git: {exc.strerror}") from None


def _signature_problem(stderr: str) -> str:
    """The line of gpg's status that says what is wrong, in words a person can act on."""
    if not stderr.strip():
        return "the commit is not signed"
    for token, reason in (("NO_PUBKEY", "signed by a key that is not in the trusted keyring"),
                          ("BADSIG", "the signature does not match the commit (BADSIG)"),
                          ("EXPKEYSIG", "signed by an expired key"),
                          ("REVKEYSIG", "signed by a revoked key"),
                          ("ERRSIG", "the signature cannot be checked")):
        if token in stderr:
            return reason
    return stderr.strip().splitlines()[-1]
