"""Record batches compressed with every codec of Kafka's protocol are read, tagged and dead-lettered.

Real producers compress (gzip, snappy, lz4, zstd); kafka-python decodes three of them only with the
optional libraries this project installs (kafka-python[lz4,snappy,zstd]).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from tests.integration.conftest import Stream, WorkerProcess, tagged_ids, wait_until
from worker.settings import COMPRESSION_TYPES

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


def test_a_batch_the_worker_cannot_decode_is_counted_logged_and_fails_readiness_while_others_flow(
        stream: Stream, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    # A worker installed without the zstd library (what kafka-python[zstd] brings): on its PYTHONPATH, a
    # `zstandard` that cannot be imported, so kafka-python finds no zstd codec, as on such an install.
    (tmp_path / "no-zstd").mkdir()
    (tmp_path / "no-zstd" / "zstandard.py").write_text('raise ImportError("zstandard is not installed")\n')
    worker = start_worker(PYTHONPATH=str(tmp_path / "no-zstd"))
    worker.wait_ready()
    docs = stream.documents(40)
    readable = [value for _, value in docs[:30]]
    # Undecodable batches first, on partitions 1, 2 and 3 (keys d, c, f), then the readable ones on
    # partition 0 (key k): the stuck partitions must not hold up the one that can advance.
    for key in (b"d", b"c", b"f"):
        stream.produce([value for _, value in docs[30:]], keys=[key] * 10, compression_type="zstd")
    stream.produce(readable, keys=[b"k"] * len(readable), compression_type="gzip")
    ids = [doc_id for doc_id, _ in docs[:30]]

    def undecodable() -> float:
        for line in worker.get("/metrics")[1].splitlines():
            if line.startswith("tagger_undecodable_batches_total "):
                return float(line.split()[1])
        return 0.0

    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids) and undecodable() >= 1, 60,
               "the gzip documents tagged and the zstd batch counted as undecodable")
    assert worker.get("/readyz")[0] == 503
    assert worker.process.poll() is None  # the worker stays up for the partitions it can read
    log = worker.log_path.read_text()
    assert "cannot decode a fetched record batch (UnsupportedCodecError" in log
    assert f"{stream.topic}/0@" in log  # every assigned partition's position is named
