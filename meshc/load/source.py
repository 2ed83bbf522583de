"""Where a spec comes from: a file on disk, or a blob at a Git revision (see meshc.load.git)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from meshc.diagnostics import MeshcError, error

MAX_SPEC_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpecSource:
    """The bytes of one mesh.yaml and how to name it in diagnostics."""

    name: str
    data: bytes
    revision: str | None = None


def read_spec_file(path: str) -> SpecSource:
    """Read a spec from disk; unreadable files are usage/IO errors (exit 2)."""
    try:
        size = os.stat(path).st_size
        if size > MAX_SPEC_BYTES:
            raise MeshcError([error("E009", f"{path} is {size} bytes; the limit is {MAX_SPEC_BYTES}", None)], 1)
        with open(path, "rb") as handle:
            return SpecSource(name=path, data=handle.read(MAX_SPEC_BYTES + 1))
    except IsADirectoryError:
        raise MeshcError([error("E001", f"{path} is a directory, not a spec file", None)], 2) from None
    except FileNotFoundError:
        raise MeshcError([error("E001", f"{path}: no such file", None)], 2) from None
    except OSError as exc:
        raise MeshcError([error("E001", f"{path}: {exc.strerror}", None)], 2) from None
