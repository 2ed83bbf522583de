"""Which files differ between two bundles: what an incremental plan of a new commit looks at.

`meshc watch` keeps the bundle it last applied. For the next commit a target may plan only the
objects of files whose bytes changed, were added or were removed, trusting everything else to
be as the previous bundle left it (drift there is found by the next full plan). The bundle's
manifest records a sha256 per file, so the difference costs two small JSON reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshc.bundle import Bundle
from meshc.emit.naming import MANIFEST_PATH


@dataclass(frozen=True)
class FileDelta:
    """Paths of the new bundle against the previous one (manifest.json itself left out)."""

    changed: frozenset[str]      # in both, other bytes
    added: frozenset[str]        # only in the new bundle
    removed: frozenset[str]      # only in the previous bundle
    unchanged: frozenset[str]    # in both, same bytes

    @property
    def new_or_changed(self) -> frozenset[str]:
        return self.changed | self.added

    @property
    def old_or_changed(self) -> frozenset[str]:
        return self.changed | self.removed

    def under(self, prefix: str) -> FileDelta:
        """Only the paths that start with `prefix` (e.g. `kubernetes/`)."""
        def keep(paths: frozenset[str]) -> frozenset[str]:
            return frozenset(p for p in paths if p.startswith(prefix))

        return FileDelta(keep(self.changed), keep(self.added), keep(self.removed), keep(self.unchanged))


def file_delta(previous: Bundle, bundle: Bundle) -> FileDelta | None:
    """The difference by the manifests' digests; None when either manifest cannot be trusted for it
    (no digests, or digests of other files than the bundle holds): plan everything then."""
    old, new = _digests(previous), _digests(bundle)
    if old is None or new is None:
        return None
    # (path, digest) pairs compared as sets: tens of thousands of files, a few of them different
    gone = {path for path, _ in old.items() - new.items()}     # removed, or changed
    came = {path for path, _ in new.items() - old.items()}     # added, or changed
    changed = gone & came
    return FileDelta(changed=frozenset(changed), added=frozenset(came - changed), removed=frozenset(gone - changed),
                     unchanged=frozenset(old.keys() - gone))


def _digests(bundle: Bundle) -> dict[str, str] | None:
    try:
        files: Any = bundle.manifest.get("files")
    except (KeyError, ValueError):
        return None
    if not isinstance(files, Mapping):
        return None
    digests: dict[str, Any] = {path: meta.get("sha256") for path, meta in files.items()
                               if type(meta) is dict}   # as JSON decodes it
    listed = set(bundle.files) - {MANIFEST_PATH}
    if digests.keys() != listed or not all(type(digest) is str and digest for digest in digests.values()):
        return None
    return digests
