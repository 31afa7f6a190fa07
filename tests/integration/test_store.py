"""Redis writes against a real redis-server: schema, idempotency, ordering, TTLs, batched lookup."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from worker.services import Service
from worker.store.client import TagClient, TagResult
from worker.store.keys import RECENT, RECENT_KEEP
from worker.store.migrate import Migration, migrate
from worker.store.writer import TagRecord, TagWriter

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(redis_service: Service) -> redis.Redis:
    return redis.Redis.from_url(f"redis://{redis_service.address}/0")


def record(doc_id: str, offset: int, partition: int = 0, ts: int = 1000, label: str = "a") -> TagRecord:
    return TagRecord(doc_id, [(label, 0.9), ("b", 0.1)], "text", "topic", partition, offset, ts)


def test_write_then_lookup(client: redis.Redis) -> None:
    doc = uuid.uuid4().hex
    assert TagWriter(client, tags_ttl_s=0, doc_ttl_s=60).write([record(doc, 4)], "v1") == [True]
    found = TagClient(client).lookup([doc])[doc]
    assert found is not None
    assert found.tags == [("a", 0.9), ("b", 0.1)] and found.model == "v1" and found.src == "topic/0/4"
    assert found.ts == 1000
    assert client.ttl(f"tagger:{{{doc}}}:tags") == -1 and 0 < client.ttl(f"tagger:{{{doc}}}:doc") <= 60
    assert json.loads(client.get(f"tagger:{{{doc}}}:doc")) == {"text": "text"}


def test_rewrite_of_the_same_message_is_idempotent(client: redis.Redis) -> None:
    doc = uuid.uuid4().hex
    writer = TagWriter(client)
    writer.write([record(doc, 4)], "v1")
    before = client.hgetall(f"tagger:{{{doc}}}:tags")
    assert writer.write([record(doc, 4)], "v1") == [True]
    assert client.hgetall(f"tagger:{{{doc}}}:tags") == before


def test_an_older_offset_never_overwrites_a_newer_result(client: redis.Redis) -> None:
    doc = uuid.uuid4().hex
    writer = TagWriter(client)
    writer.write([record(doc, 10, label="new")], "v1")
    assert writer.write([record(doc, 3, label="old")], "v1") == [False]
    assert json.loads(client.hget(f"tagger:{{{doc}}}:tags", "tags"))[0][0] == "new"
    # across partitions the message timestamp decides
    assert writer.write([record(doc, 1, partition=2, ts=999, label="older")], "v1") == [False]
    assert writer.write([record(doc, 1, partition=2, ts=2000, label="later")], "v1") == [True]
    assert json.loads(client.hget(f"tagger:{{{doc}}}:tags", "tags"))[0][0] == "later"


def test_tags_ttl_is_applied(client: redis.Redis) -> None:
    doc = uuid.uuid4().hex
    TagWriter(client, tags_ttl_s=30).write([record(doc, 1)], "v1")
    assert 0 < client.ttl(f"tagger:{{{doc}}}:tags") <= 30


def test_lookup_of_many_ids_is_one_round_trip(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [uuid.uuid4().hex for _ in range(50)]
    TagWriter(client).write([record(doc, i) for i, doc in enumerate(docs)], "v1")
    calls: list[int] = []
    original = redis.client.Pipeline.execute

    def counted(self: redis.client.Pipeline, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    found = TagClient(client).lookup([*docs, "unknown"])
    assert len(calls) == 1
    assert found["unknown"] is None and all(found[d] is not None for d in docs)


def test_a_server_that_forgot_the_write_script_gets_it_again(client: redis.Redis) -> None:
    doc = uuid.uuid4().hex
    writer = TagWriter(client)
    assert writer.write([record(doc, 1)], "v1") == [True]
    client.script_flush()  # as after a restart or a failover to a replica
    assert writer.write([record(doc, 2, label="again")], "v1") == [True]
    assert json.loads(client.hget(f"tagger:{{{doc}}}:tags", "tags"))[0][0] == "again"


def test_migrate_renames_old_keys_keeping_expiry_and_lets_newer_results_win(client: redis.Redis) -> None:
    old, newer = uuid.uuid4().hex, uuid.uuid4().hex
    client.hset(f"tagger:tags:{old}", mapping={"tags": '[["a", 0.9]]', "model": "v0", "src": "t/0/3", "ts": 5})
    client.set(f"tagger:doc:{old}", json.dumps({"text": "old text"}), ex=600)
    client.hset(f"tagger:tags:{newer}", mapping={"tags": '[["stale", 0.9]]', "model": "v0", "src": "t/0/1", "ts": 5})
    TagWriter(client).write([record(newer, 9)], "v1")  # the new schema already holds a later result

    done = migrate(client)
    assert done == Migration(renamed=2, superseded=1)
    assert TagClient(client).lookup([old])[old] == TagResult([("a", 0.9)], "v0", "t/0/3", 5)
    assert 0 < client.ttl(f"tagger:{{{old}}}:doc") <= 600 and client.ttl(f"tagger:{{{old}}}:tags") == -1
    assert TagClient(client).lookup([newer])[newer].model == "v1"  # type: ignore[union-attr]
    assert not client.exists(f"tagger:tags:{old}", f"tagger:doc:{old}", f"tagger:tags:{newer}")
    assert migrate(client) == Migration(0, 0)  # a second run finds nothing


def test_written_ids_are_kept_as_recently_tagged_newest_first_and_capped(client: redis.Redis) -> None:
    client.delete(RECENT)
    writer = TagWriter(client)
    writer.write([record(f"r{i}", i, ts=1000 + i) for i in range(3)], "v1")
    assert client.zrevrange(RECENT, 0, -1) == [b"r2", b"r1", b"r0"]
    writer.write([record(f"s{i}", i, ts=5000 + i) for i in range(RECENT_KEEP)], "v1")
    assert client.zcard(RECENT) == RECENT_KEEP and client.zscore(RECENT, "r2") is None  # the oldest went
