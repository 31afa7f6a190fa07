"""Tag writes: one pipeline (one round trip) per batch, each document's write one atomic script.

A write is idempotent, and never replaces a result from a newer message: for the same partition
the higher offset wins, across partitions the later timestamp wins. The check and the write run as
one Lua script, so concurrent workers cannot interleave them. The keys are in :mod:`worker.store.keys`;
a document's two keys share a hash tag, so on a Redis Cluster the script runs in one slot.

On a cluster the batch goes out as one plain pipeline per primary, grouped here by each document's slot:
redis-py's ClusterPipeline, which routes command by command, made the Redis stage 2.7x slower per
document in the stream benchmark (docs/results.md). When the slot map is stale (a failover, resharding:
MOVED, ASK, a node gone) it is re-read from the cluster and the error goes to the caller to retry.

The script is called by its SHA; a server that does not know it (first use, a restart, a failover to a
replica) gets it loaded and the batch resent (the writes are idempotent).

The same round trip records the batch's ids in ``tagger:recent`` (by message timestamp, capped at
``RECENT_KEEP``), the review page's list of recently tagged documents.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, TryAgainError

from worker.store.connection import Client
from worker.store.keys import RECENT, RECENT_KEEP, doc_key, tags_key

__all__ = ["TagRecord", "TagWriter"]

_WRITE_IF_NEWER = """
local src = redis.call('HGET', KEYS[1], 'src')
if src then
  local where, offset = string.match(src, '^(.*)/(%d+)$')
  if where == ARGV[5] then
    if tonumber(offset) > tonumber(ARGV[6]) then return 0 end
  else
    local ts = tonumber(redis.call('HGET', KEYS[1], 'ts'))
    if ts and ts > tonumber(ARGV[4]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], 'tags', ARGV[1], 'model', ARGV[2], 'src', ARGV[3], 'ts', ARGV[4])
if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[7]) else redis.call('PERSIST', KEYS[1]) end
if tonumber(ARGV[9]) > 0 then
  redis.call('SET', KEYS[2], ARGV[8], 'EX', ARGV[9])
else
  redis.call('SET', KEYS[2], ARGV[8])
end
return 1
"""


@dataclass(frozen=True)
class TagRecord:
    """One document's result, ready to write."""

    doc_id: str
    tags: list[tuple[str, float]]
    text: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


# Errors after which a cluster's slot map may be stale.
_STALE_MAP = (MovedError, AskError, ClusterDownError, TryAgainError, redis.ConnectionError, redis.TimeoutError)


class TagWriter:
    """Writes a batch of results in one pipeline (one round trip; on a cluster, one per primary)."""

    def __init__(self, client: Client, tags_ttl_s: int = 0, doc_ttl_s: int = 0) -> None:
        self.client = client
        self.tags_ttl_s, self.doc_ttl_s = tags_ttl_s, doc_ttl_s
        self.sha = hashlib.sha1(_WRITE_IF_NEWER.encode()).hexdigest()  # the server names it the same

    def write(self, records: Sequence[TagRecord], model_version: str) -> list[bool]:
        """Write every record; True where written, False where a newer result was already stored."""
        try:
            return self._write(records, model_version)
        except NoScriptError:  # the writes are idempotent: those that ran before the error run again
            self.client.script_load(_WRITE_IF_NEWER)  # on a cluster: on every primary
            return self._write(records, model_version)

    def _write(self, records: Sequence[TagRecord], model_version: str) -> list[bool]:
        if isinstance(self.client, RedisCluster):
            return self._per_node(self.client, records, model_version)
        return self._pipelined(records, model_version)

    def _pipelined(self, records: Sequence[TagRecord], model_version: str) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for r in records:
            self._queue(pipe, r, model_version)
        _note_recent(pipe, records)
        return [bool(done) for done in pipe.execute()[:len(records)]]

    def _per_node(self, cluster: RedisCluster, records: Sequence[TagRecord], model_version: str) -> list[bool]:
        groups: dict[str, tuple[redis.Redis, list[int]]] = {}
        for i, r in enumerate(records):
            node = cluster.get_node_from_key(tags_key(r.doc_id))
            groups.setdefault(node.name, (cluster.get_redis_connection(node), []))[1].append(i)
        recent = cluster.get_node_from_key(RECENT)
        groups.setdefault(recent.name, (cluster.get_redis_connection(recent), []))
        written = [False] * len(records)
        try:
            for name, (connection, indices) in groups.items():
                pipe = connection.pipeline(transaction=False)
                for i in indices:
                    self._queue(pipe, records[i], model_version)
                if name == recent.name:
                    _note_recent(pipe, records)
                for i, done in zip(indices, pipe.execute()[:len(indices)], strict=True):
                    written[i] = bool(done)
        except _STALE_MAP as err:
            with contextlib.suppress(redis.RedisError):  # nodes still away: the next write re-reads again
                cluster.nodes_manager.initialize()
            if isinstance(err, MovedError | AskError):  # retried by the caller like any transient error
                raise TryAgainError(f"slots moved ({err}); slot map re-read") from err
            raise
        return written

    def _queue(self, pipe: redis.client.Pipeline, r: TagRecord, model_version: str) -> None:
        tags = json.dumps([[label, score] for label, score in r.tags])
        where = f"{r.topic}/{r.partition}"
        pipe.evalsha(self.sha, 2, tags_key(r.doc_id), doc_key(r.doc_id), tags, model_version,
                     f"{where}/{r.offset}", r.timestamp_ms, where, r.offset, self.tags_ttl_s,
                     json.dumps({"text": r.text}), self.doc_ttl_s)


def _note_recent(pipe: redis.client.Pipeline, records: Sequence[TagRecord]) -> None:
    """Queue the batch's ids into ``tagger:recent`` and trim it to the newest ``RECENT_KEEP``."""
    if records:
        pipe.zadd(RECENT, {r.doc_id: r.timestamp_ms for r in records})
        pipe.zremrangebyrank(RECENT, 0, -RECENT_KEEP - 1)
