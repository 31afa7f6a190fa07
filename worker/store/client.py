"""Live lookup of tags for apps: many ids in one Redis round trip (one per node on a Redis Cluster).

    from worker.store.client import TagClient
    client = TagClient.from_url("redis://localhost:6379/0")        # cluster=True: any node of a cluster
    client.lookup(["doc-1", "doc-2"])   # {"doc-1": TagResult(...), "doc-2": None}

With a password or TLS, build it from the worker's settings::

    TagClient.from_settings(RedisSettings.from_sources(os.environ))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster

from worker.settings import RedisSettings
from worker.store.connection import Client, connect
from worker.store.keys import tags_key

__all__ = ["TagClient", "TagResult", "read_result", "read_tags"]


@dataclass(frozen=True)
class TagResult:
    """A document's stored tags and where they came from."""

    tags: list[tuple[str, float]]  # best first
    model: str  # model version
    src: str  # topic/partition/offset
    ts: int  # message timestamp, ms since the epoch


class TagClient:
    """Reads ``tagger:{id}:tags`` hashes, from one server or a Redis Cluster."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str, cluster: bool = False, **options: object) -> TagClient:
        """Connect with a redis:// or rediss:// URL (of any node, with ``cluster``; options go to redis-py)."""
        return cls(RedisCluster.from_url(url, **options) if cluster else redis.Redis.from_url(url, **options))

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> TagClient:
        """Connect as the worker does: TAGGER_REDIS_URL, password (or password file), TLS CA bundle, cluster."""
        return cls(connect(settings, wait=False))

    def lookup(self, ids: Sequence[str]) -> dict[str, TagResult | None]:
        """Tags of each id (None where the document is unknown or expired), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for doc_id in ids:
            pipe.hgetall(tags_key(doc_id))
        return {doc_id: read_result(raw) for doc_id, raw in zip(ids, pipe.execute(), strict=True)}


def read_tags(raw: bytes | str) -> list[tuple[str, float]]:
    """The ``tags`` field of a ``tagger:{id}:tags`` hash as (label, score) pairs, best first."""
    return [(str(label), float(score)) for label, score in json.loads(raw)]


def read_result(raw: dict[bytes, bytes]) -> TagResult | None:
    """A whole ``tagger:{id}:tags`` hash (HGETALL's reply) as a TagResult; None when it is empty."""
    if not raw:
        return None
    return TagResult(read_tags(raw[b"tags"]), raw[b"model"].decode(), raw[b"src"].decode(), int(raw[b"ts"]))
