"""etcd emitter: the seed data (`etcd/seed.json`), one JSON record per service under the prefix."""

from meshc.emit.etcd.seed import emit

__all__ = ["emit"]
