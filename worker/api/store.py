"""The API's asyncio Redis client, for the lookup routes: they never leave the event loop.

A lookup is one Redis round trip and a little JSON; run in FastAPI's thread pool it would also pay a thread
hand-over and wait for the GIL, which dominated its latency under load (docs/api.md, "Load"). The client
reaches the server :func:`worker.store.connection.connect` reaches, with the same password (or password
file), TLS CA bundle and cluster mode; connect() has already checked them at start (ApiState.start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from worker.settings import RedisSettings
from worker.store.client import TagResult, read_result
from worker.store.connection import client_options
from worker.store.keys import doc_key, tags_key

__all__ = ["AsyncClient", "async_client", "lookup", "read_document_raw", "recent_raw"]

AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster


def async_client(settings: RedisSettings) -> AsyncClient:
    """An asyncio client for the configured Redis (one server or a cluster)."""
    # Two quick retries, not redis-py's ten over seconds: during an outage a caller gets a 503 at once.
    options = {**client_options(settings), "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 2)}
    if settings.redis_cluster:
        return redis.asyncio.RedisCluster.from_url(settings.redis_url, **options)
    return redis.asyncio.Redis.from_url(settings.redis_url, **options)


async def lookup(client: AsyncClient, ids: Sequence[str]) -> dict[str, TagResult | None]:
    """Tags of each id (None where unknown or expired), in one pipeline: TagClient.lookup for the event loop."""
    pipe = client.pipeline(transaction=False)
    for doc_id in ids:
        pipe.hgetall(tags_key(doc_id))
    return {doc_id: read_result(raw) for doc_id, raw in zip(ids, await pipe.execute(), strict=True)}


async def read_document_raw(client: AsyncClient, doc_id: str) -> tuple[dict[bytes, bytes], bytes | None]:
    """The document's tags hash and text value, in one round trip (its two keys share a cluster slot)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(tags_key(doc_id))
    pipe.get(doc_key(doc_id))
    raw_tags, raw_doc = await pipe.execute()
    return raw_tags, raw_doc


async def recent_raw(client: AsyncClient, key: str, limit: int) -> list[tuple[bytes, float]]:
    """The ``limit`` newest members of the sorted set ``key`` with their scores."""
    entries: Any = await client.zrevrange(key, 0, limit - 1, withscores=True)
    return list(entries)
