"""Record batches compressed with every codec of Kafka's protocol are read, tagged and dead-lettered.

Real producers compress (gzip, snappy, lz4, zstd); kafka-python decodes three of them only with the
optional libraries this project installs (kafka-python[lz4,snappy,zstd]).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer

from tests.integration.conftest import Stream, WorkerProcess, tagged_ids, wait_until
from worker.config import COMPRESSION_TYPES

pytestmark = pytest.mark.integration
CODECS = [codec for codec in COMPRESSION_TYPES if codec != "none"]


def test_documents_in_batches_of_every_codec_are_all_tagged_and_bad_ones_dead_lettered_compressed(
        stream: Stream, start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(TAGGER_KAFKA_COMPRESSION_TYPE="zstd")  # the DLQ producer compresses too
    worker.wait_ready()
    ids: list[str] = []
    for n, codec in enumerate(CODECS):
        docs = stream.documents(50, start=50 * n)
        stream.produce([value for _, value in docs] + [f"{{not json {codec}".encode()], compression_type=codec)
        ids += [doc_id for doc_id, _ in docs]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 60, "documents of every codec tagged")

    consumer = KafkaConsumer(stream.dlq, bootstrap_servers=stream.broker, auto_offset_reset="earliest",
                             consumer_timeout_ms=15_000, group_id=f"dlq-reader-{uuid.uuid4().hex[:6]}")
    dead = []
    for message in consumer:
        dead.append(message.value.decode())
        if len(dead) == len(CODECS):
            break
    consumer.close()
    assert sorted(dead) == sorted(f"{{not json {codec}" for codec in CODECS)
    wait_until(lambda: sum(stream.committed().values()) == len(ids) + len(CODECS), 30, "every offset committed")
    assert worker.process.poll() is None
