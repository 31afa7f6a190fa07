"""``tagger store migrate``: rename the keys of the schema before hash tags to their current names.

Until 2026-12 a document's keys were ``tagger:tags:<id>`` and ``tagger:doc:<id>``; now they are
``tagger:{<id>}:tags`` and ``tagger:{<id>}:doc`` (:mod:`worker.store.keys`), so that a Redis Cluster keeps
both in one slot. On the single server the old schema lived on, each old key is renamed in place
(RENAMENX keeps its value and its expiry); where the new key already exists, a worker of the new version
wrote it from a later message, so it wins and the old key is deleted. Safe while workers run, and safe to
run again. The old schema never worked on a cluster (its write failed across slots), so there is nothing
to migrate there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.cluster import RedisCluster

from model.errors import ConfigError
from worker.store.connection import Client
from worker.store.keys import LEGACY_PATTERNS, migrated_key

__all__ = ["Migration", "migrate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """What a run did."""

    renamed: int  # old keys now under their new names
    superseded: int  # old keys deleted because their new key already held a later result


def migrate(client: Client, scan_count: int = 1000) -> Migration:
    """Rename every old-schema key on a single Redis server; ConfigError on a cluster."""
    if isinstance(client, RedisCluster):
        raise ConfigError("tagger store migrate runs against the single Redis server the old key schema lived "
                          "on; a cluster never held old keys (move a migrated server into a cluster with "
                          "redis-cli --cluster import)")
    renamed = superseded = 0
    for pattern in LEGACY_PATTERNS:
        for raw in client.scan_iter(match=pattern, count=scan_count):
            old = raw.decode() if isinstance(raw, bytes) else str(raw)
            new = migrated_key(old)
            if new is None:
                continue
            if client.renamenx(old, new):
                renamed += 1
            else:
                client.delete(old)
                superseded += 1
    log.info("store migrated: %d keys renamed, %d old keys superseded by newer results", renamed, superseded)
    return Migration(renamed, superseded)
