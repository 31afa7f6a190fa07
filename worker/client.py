"""Live lookup of tags for apps: many ids in one Redis round trip.

    from worker.client import TagClient
    client = TagClient.from_url("redis://localhost:6379/0")
    client.lookup(["doc-1", "doc-2"])   # {"doc-1": TagResult(...), "doc-2": None}

With a password or TLS, build it from the worker's settings: ``TagClient.from_settings(settings_from(os.environ))``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from worker.config import WorkerSettings
from worker.store import TAGS_KEY, connect

__all__ = ["TagClient", "TagResult"]


@dataclass(frozen=True)
class TagResult:
    """A document's stored tags and where they came from."""

    tags: list[tuple[str, float]]  # best first
    model: str  # model version
    src: str  # topic/partition/offset
    ts: int  # message timestamp, ms since the epoch


class TagClient:
    """Reads ``tagger:tags:{id}`` hashes."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str, **options: object) -> TagClient:
        """Connect with a redis:// or rediss:// URL (options go to redis-py)."""
        return cls(redis.Redis.from_url(url, **options))

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> TagClient:
        """Connect as the worker does: TAGGER_REDIS_URL, password (or password file) and TLS CA bundle."""
        return cls(connect(settings, wait=False))

    def lookup(self, ids: Sequence[str]) -> dict[str, TagResult | None]:
        """Tags of each id (None where the document is unknown or expired), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for doc_id in ids:
            pipe.hgetall(TAGS_KEY.format(doc_id))
        return {doc_id: _result(raw) for doc_id, raw in zip(ids, pipe.execute(), strict=True)}


def _result(raw: dict[bytes, bytes]) -> TagResult | None:
    if not raw:
        return None
    tags = [(str(label), float(score)) for label, score in json.loads(raw[b"tags"])]
    return TagResult(tags, raw[b"model"].decode(), raw[b"src"].decode(), int(raw[b"ts"]))
