"""The trusted keyring of `--verify-signatures`: public keys imported into a private GnuPG home.

Only keys from the given keyring file are trusted: the GnuPG home is made fresh, so the user's
own keyring (or the container's) never widens what is accepted. `git verify-commit` then runs
with GNUPGHOME pointing at it (meshc.sync.watch_source.GitSource.verify_signature).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

GPG_TIMEOUT = 60.0


class KeyringError(Exception):
    """The keyring cannot be used: gpg missing, file unreadable, or no public key in it."""


class TrustedKeyring:
    """`with TrustedKeyring(path) as keyring:` -> keyring.home is a GNUPGHOME holding those keys only."""

    def __init__(self, keyring_file: str) -> None:
        self.keyring_file = keyring_file
        self.gpg = shutil.which("gpg")
        if self.gpg is None:
            raise KeyringError("--verify-signatures needs gpg (GnuPG) on PATH; install it (apt-get install gnupg)")
        if not os.path.isfile(keyring_file):
            raise KeyringError(f"--keyring {keyring_file}: no such file")
        # Short, private path: gpg puts its agent socket in the home, and socket paths are short.
        self.home = tempfile.mkdtemp(prefix="meshc-gpg-")
        os.chmod(self.home, 0o700)
        try:
            self.fingerprints = self._import()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.gpg is not None
        return subprocess.run([self.gpg, "--batch", "--no-tty", "--homedir", self.home, *args],
                              capture_output=True, text=True, timeout=GPG_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)

    def _import(self) -> list[str]:
        imported = self._run("--import", self.keyring_file)
        if imported.returncode != 0:
            detail = imported.stderr.strip().splitlines()[-1:] or ["gpg failed"]
            raise KeyringError(f"--keyring {self.keyring_file}: gpg cannot import it: {detail[0]}")
        listed = self._run("--with-colons", "--list-keys")
        fingerprints = [line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("fpr:")]
        if not fingerprints:
            raise KeyringError(f"--keyring {self.keyring_file}: holds no public key")
        return fingerprints

    def close(self) -> None:
        gpgconf = shutil.which("gpgconf")
        if gpgconf is not None and Path(self.home).exists():
            subprocess.run([gpgconf, "--homedir", self.home, "--kill", "all"], capture_output=True,
                           timeout=GPG_TIMEOUT, check=False)
        shutil.rmtree(self.home, ignore_errors=True)
