"""Bundle stage: the compiled output as files plus a manifest of digests.

A Bundle is the ONLY thing the sync side sees of a compilation. It can be written to a directory
(atomically: build beside, then swap) and read back.
"""

from meshc.bundle.bundle import Bundle, make_bundle, render_files, render_stream
from meshc.bundle.store import BundleWriteError, read_bundle, write_bundle

__all__ = ["Bundle", "BundleWriteError", "make_bundle", "render_files", "render_stream", "read_bundle", "write_bundle"]
