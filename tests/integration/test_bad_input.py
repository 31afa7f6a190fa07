"""Bad input end to end: the poison corpus through a real broker, worker and Redis; poison corrections.

The corpus (``benchmarks.poison.poison_cases``) holds one message of every bad kind, each with the DLQ
reason it must get, and odd but valid documents that must be tagged.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.poison import Case, interleave, poison_cases
from model import checkpoint
from tests.integration.conftest import Stream, WorkerProcess, tagged_ids, wait_until
from tests.support.fixtures import empty_database
from worker.learn.corrections import Correction, CorrectionClient, CorrectionRejected, entry_fields
from worker.learn.learner import Learner
from worker.learn.registry import Registry
from worker.services import Service
from worker.settings import KafkaSettings, Settings
from worker.store.keys import CORRECTIONS, EXAMPLES, LEARNERS, REJECTED
from worker.store.writer import TagRecord, TagWriter
from worker.stream import kafka as kafka_clients
from worker.stream.kafka import FETCH_MAX_BYTES

pytestmark = pytest.mark.integration


def produce(stream: Stream, cases: list[Case]) -> list[str]:
    """Send the cases in order; returns each one's ``topic/partition/offset``."""
    producer = kafka_clients.producer(KafkaSettings(kafka_bootstrap_servers=stream.broker))
    futures = [producer.send(stream.topic, value=case.value, key=case.key) for case in cases]
    producer.flush()
    sources = [f"{stream.topic}/{meta.partition}/{meta.offset}" for meta in (f.get(30) for f in futures)]
    producer.close()
    return sources


def dead_letters(stream: Stream, n: int, timeout: float) -> dict[str, tuple[dict[str, bytes], bytes | None]]:
    """The first ``n`` DLQ messages by their ``source`` header: (headers, value)."""
    consumer = KafkaConsumer(bootstrap_servers=stream.broker, auto_offset_reset="earliest", group_id=None,
                             fetch_max_bytes=FETCH_MAX_BYTES, receive_message_max_bytes=2 * FETCH_MAX_BYTES)
    consumer.assign([TopicPartition(stream.dlq, 0)])  # the DLQ has one partition; no group to join
    seen: dict[str, tuple[dict[str, bytes], bytes | None]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    headers = dict(message.headers)
                    seen[headers["source"].decode()] = (headers, message.value)
    finally:
        consumer.close()
    return seen


def bad_message_counts(worker: WorkerProcess) -> Counter[str]:
    """tagger_bad_messages_total by reason, scraped from the worker."""
    status, body = worker.get("/metrics")
    assert status == 200
    return Counter({sample.labels["reason"]: int(sample.value) for family in text_string_to_metric_families(body)
                    for sample in family.samples if sample.name == "tagger_bad_messages_total"})


def test_poison_corpus_every_good_document_tagged_every_bad_one_dead_lettered_with_its_reason(
        stream: Stream, start_worker: Callable[..., WorkerProcess]) -> None:
    good = [Case("good", value, None, doc_id, doc_id.encode()) for doc_id, value in stream.documents(120)]
    cases = interleave(good, poison_cases(stream.topic))
    worker = start_worker()
    worker.wait_ready()
    sources = produce(stream, cases)

    valid_ids = sorted({case.doc_id for case in cases if case.reason is None and case.doc_id})
    wait_until(lambda: len(tagged_ids(stream.redis_url, valid_ids)) == len(valid_ids), 60, "valid documents tagged")
    expected = {source: case for source, case in zip(sources, cases, strict=True) if case.reason}
    dead = dead_letters(stream, len(expected), 60)
    assert {source: headers["reason"].decode() for source, (headers, _) in dead.items()} == \
           {source: case.reason for source, case in expected.items()}
    for source, (headers, value) in dead.items():
        assert value == expected[source].value, expected[source].kind  # copied unchanged, 10 MB included
        assert headers["detail"], expected[source].kind

    # duplicate ids: both valid, on one partition (same key); the later offset's tags and text are kept
    first, second = (sources[i] for i, case in enumerate(cases) if case.kind.startswith("duplicate_id"))
    client = redis.Redis.from_url(stream.redis_url)
    dup = f"{stream.topic}-dup"
    wait_until(lambda: client.hget(f"tagger:{{{dup}}}:tags", "src") == second.encode(), 30,
               "the later duplicate's tags")
    assert json.loads(client.get(f"tagger:{{{dup}}}:doc"))["text"] == "crude oil barrels opec"
    assert first.rsplit("/", 1)[0] == second.rsplit("/", 1)[0] and first != second

    wait_until(lambda: sum(stream.committed().values()) == len(cases), 30, "every offset committed")
    assert bad_message_counts(worker) == Counter(case.reason for case in expected.values())
    assert worker.process.poll() is None  # never crashed
    assert "Traceback" not in worker.log_path.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------- corrections


@pytest.fixture()
def corrections_db(redis_service: Service) -> Iterator[redis.Redis]:
    """A Redis database of its own (the corrections keys are global), emptied before and after."""
    with empty_database(redis_service.address, 7) as client:
        yield client


def labels_of(model_dir: Path) -> list[str]:
    return list(checkpoint.read_meta(model_dir).labels)


def tag(client: redis.Redis, labels: list[str], n: int) -> list[str]:
    """Store tags for documents doc-0 .. doc-(n-1), as the worker would."""
    records = [TagRecord(f"doc-{i}", [(labels[0], 0.9), (labels[1], 0.2)], f"text {i}", "docs", 0, i, 1000)
               for i in range(n)]
    TagWriter(client).write(records, "v1")
    return [r.doc_id for r in records]


def test_poison_corrections_are_rejected_with_reasons_and_no_good_one_is_lost(corrections_db: redis.Redis,
                                                                              model_dir: Path) -> None:
    labels = labels_of(model_dir)
    docs = tag(corrections_db, labels, 10)
    corrections = CorrectionClient(corrections_db, labels, per_user_per_minute=1000)
    poison: list[tuple[str, list[object], list[object], str, str]] = [
        (docs[0], ["no-such-label"], [], "u", "unknown_label"),
        (docs[0], [f"label-{i}" for i in range(10_000)], [], "u", "too_many_labels"),
        (docs[0], [], list(labels) * 10, "u", "too_many_labels"),
        (docs[0], ["x" * 1_000_000], [], "u", "unknown_label"),
        ("never-tagged", [labels[2]], [], "u", "unknown_document"),
        ("x\ud800", [labels[2]], [], "u", "bad_id"),
        (docs[1], [], [], "u", "empty"),
        (docs[1], [labels[2]], [labels[2]], "u", "conflict"),
        (docs[1], [1, None], [], "u", "bad_labels"),
        (docs[1], [labels[2]], [], "", "bad_user"),
    ]
    accepted = []
    for i, (doc_id, add, remove, user, reason) in enumerate(poison):
        corrections.submit(docs[i % 10], [labels[2]], [labels[0]], f"user-{i}")  # a good one before each bad one
        accepted.append(docs[i % 10])
        with pytest.raises(CorrectionRejected) as caught:
            corrections.submit(doc_id, add, remove, user)  # type: ignore[arg-type]
        assert caught.value.reason == reason
        assert len(str(caught.value)) < 500  # a megabyte label does not make a megabyte message
    assert [entry[1][b"id"].decode() for entry in corrections_db.xrange(CORRECTIONS)] == accepted
    rejected = {k.decode(): int(v) for k, v in corrections_db.hgetall(REJECTED).items()}
    assert rejected == Counter(reason for *_, reason in poison)


def test_the_learner_rejects_poison_stream_entries_and_stores_every_good_one(
        corrections_db: redis.Redis, model_dir: Path, redis_service: Service, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.publish(model_dir)
    labels = labels_of(model_dir)
    docs = tag(corrections_db, labels, 6)
    good = [entry_fields(Correction(doc_id, (labels[2],), (), f"user-{i}", 1)) for i, doc_id in enumerate(docs)]
    poison: list[tuple[dict[str, str], str]] = [
        ({"id": docs[0]}, "malformed"),
        ({**good[0], "add": "not json"}, "malformed"),
        ({**good[0], "add": '"abc"'}, "malformed"),  # a string, not a list: never split into labels
        ({**good[0], "add": "[1, 2]"}, "malformed"),
        ({**good[0], "ts": "yesterday"}, "malformed"),
        ({**good[0], "remove": json.dumps(["no-such-label"])}, "unknown_label"),  # adding one would propose it
        ({**good[0], "add": json.dumps([" padded"])}, "bad_new_label"),
        ({**good[0], "add": json.dumps([f"l{i}" for i in range(10_000)])}, "too_many_labels"),
        ({**good[0], "id": "expired-or-never-tagged"}, "unknown_document"),
    ]
    for i, fields in enumerate(good):
        corrections_db.xadd(CORRECTIONS, fields)  # type: ignore[arg-type]
        if i < len(poison):
            corrections_db.xadd(CORRECTIONS, poison[i][0])  # type: ignore[arg-type]
    for fields, _ in poison[len(good):]:
        corrections_db.xadd(CORRECTIONS, fields)  # type: ignore[arg-type]

    settings = Settings.of(model_dir=str(registry.root), redis_url=f"redis://{redis_service.address}/7",
                              metrics_port=0, metrics_host="127.0.0.1")
    learner = Learner(settings, client=corrections_db)
    assert learner.ingest() == len(good)
    assert sorted(key.decode() for key in corrections_db.hkeys(EXAMPLES)) == sorted(docs)
    rejected = {k.decode(): int(v) for k, v in corrections_db.hgetall(REJECTED).items()}
    assert rejected == Counter(reason for _, reason in poison)
    assert corrections_db.xpending(CORRECTIONS, LEARNERS)["pending"] == 0  # every entry acknowledged, none retried
