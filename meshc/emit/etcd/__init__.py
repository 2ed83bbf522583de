"""etcd emitter: the seed data (`etcd/seed.json`), one JSON record per service under the prefix."""

from meshc.emit.etcd.seed import MAX_RECORD_BYTES, MAX_REQUEST_BYTES, emit, record_size

__all__ = ["MAX_RECORD_BYTES", "MAX_REQUEST_BYTES", "emit", "record_size"]
