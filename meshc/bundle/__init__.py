"""Bundle stage: the compiled output as files plus a manifest of digests.

A Bundle is the ONLY thing the sync side sees of a compilation. It can be written to a directory
(atomically: build beside, then swap) and read back.
"""

from meshc.bundle.bundle import Bundle, FileEntry, PackedFiles, make_bundle, manifest, pack, render_files
from meshc.bundle.shards import MAX_UNITS, Crew, Unit, Units
from meshc.bundle.store import BundleWriteError, StagedOutput, read_bundle, write_bundle

__all__ = [
    "MAX_UNITS", "Bundle", "BundleWriteError", "Crew", "FileEntry", "PackedFiles", "StagedOutput", "Unit", "Units",
    "make_bundle", "manifest", "pack", "read_bundle", "render_files", "write_bundle",
]
