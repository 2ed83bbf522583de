"""Real Git repositories for tests, with reproducible commits (fixed author, clock that ticks per commit)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import git

AUTHOR_NAME = "meshc tests"
AUTHOR_EMAIL = "tests@meshc.invalid"
EPOCH = 1_700_000_000  # first commit time; each further commit is one second later
DEFAULT_BRANCH = "main"

# The user's and the system's Git config must not change what tests see (signing, hooks, names).
_HERMETIC_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


class GitRepo:
    """A thin layer on gitpython's `Repo`; `repo` stays available for anything not covered here."""

    def __init__(self, repo: git.Repo) -> None:
        self.repo = repo
        self.repo.git.update_environment(**_HERMETIC_ENV)
        self._commits_made = int(repo.git.rev_list("--all", "--count") or 0) if repo.head.is_valid() else 0

    @classmethod
    def init(cls, path: str | Path, bare: bool = False, branch: str = DEFAULT_BRANCH) -> GitRepo:
        Path(path).mkdir(parents=True, exist_ok=True)
        return cls(git.Repo.init(path, bare=bare, initial_branch=branch))

    @classmethod
    def open(cls, path: str | Path) -> GitRepo:
        return cls(git.Repo(path))

    @property
    def path(self) -> Path:
        """The work tree, or the repository itself when bare."""
        return Path(self.repo.working_tree_dir or self.repo.git_dir)

    @property
    def head_sha(self) -> str:
        return self.repo.head.commit.hexsha

    @property
    def active_branch(self) -> str:
        return self.repo.active_branch.name

    # -- commits -----------------------------------------------------------------------------
    def commit_file(self, relpath: str, text: str, message: str) -> str:
        """Write, stage and commit one file; returns the new commit's sha."""
        return self.commit_files({relpath: text}, message)

    def commit_files(self, files: Mapping[str, str | None], message: str, allow_empty: bool = False) -> str:
        """Commit several files at once; a value of None deletes that file."""
        for relpath, text in files.items():
            if text is None:
                self.repo.git.rm("--quiet", "--", relpath)
            else:
                self.dirty(relpath, text)
                self.repo.git.add("--", relpath)
        return self._commit(message, allow_empty)

    def commit_empty(self, message: str) -> str:
        """A commit that changes no file, as a no-op push would be."""
        return self.commit_files({}, message, allow_empty=True)

    def dirty(self, relpath: str, text: str) -> Path:
        """Change the work tree without staging or committing."""
        target = self._work_tree() / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def _commit(self, message: str, allow_empty: bool) -> str:
        self._work_tree()
        self._commits_made += 1
        args = ["--quiet", "--no-verify", "-m", message] + (["--allow-empty"] if allow_empty else [])
        self.repo.git.commit(*args, env=self._commit_env(EPOCH + self._commits_made))
        return self.head_sha

    def _commit_env(self, timestamp: int) -> dict[str, str]:
        date = f"{timestamp} +0000"
        return {
            "GIT_AUTHOR_NAME": AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
            "GIT_COMMITTER_DATE": date,
        }

    def _work_tree(self) -> Path:
        if self.repo.bare:
            raise ValueError(f"{self.path} is bare: commit in a clone and push")
        return Path(str(self.repo.working_tree_dir))

    # -- branches and other repositories -----------------------------------------------------
    def branch(self, name: str, start: str = "HEAD", checkout: bool = False) -> None:
        self.repo.git.branch(name, start)
        if checkout:
            self.checkout(name)

    def checkout(self, ref: str) -> None:
        self.repo.git.checkout("--quiet", ref)

    def clone_bare(self, dest: str | Path) -> GitRepo:
        """A bare clone, to serve as the remote (`--repo URL`) a sync loop fetches from."""
        return GitRepo(self.repo.clone(str(dest), bare=True))

    def push(self, remote: str | Path, branch: str | None = None) -> None:
        """Push a branch (default: the current one) to a repository path or URL."""
        name = branch or self.active_branch
        self.repo.git.push("--quiet", str(remote), f"{name}:{name}")

    def show(self, rev: str, relpath: str) -> str:
        """A file's text at a revision."""
        return str(self.repo.git.show(f"{rev}:{relpath}"))

    def shas(self, rev: str = "HEAD") -> list[str]:
        """Commits reachable from rev, newest first."""
        return [commit.hexsha for commit in self.repo.iter_commits(rev)]
