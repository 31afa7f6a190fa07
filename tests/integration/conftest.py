"""Integration fixtures: a real tansu broker and real redis-server on free ports, a tiny trained model,
and the worker as a subprocess. Waits are on conditions with deadlines, never bare sleeps."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from benchmarks.rig import chaos
from benchmarks.rig.chaos import FAST_GROUP, ScenarioError, wait_for
from benchmarks.rig.process import ServeProcess
from model.synthetic import generate_corpus
from tests.support.fixtures import tiny_model
from worker.services import Service, ServiceError, start_redis, start_tansu
from worker.settings import KafkaSettings
from worker.stream import kafka as kafka_clients
from worker.stream.kafka import create_topic

PARTITIONS = 4
def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is truthy; fail the test naming ``what`` after ``timeout`` seconds."""
    try:
        wait_for(condition, timeout, what)
    except ScenarioError as err:
        pytest.fail(str(err))


def _service(start: Callable[[], Service]) -> Iterator[Service]:
    try:
        service = start()
    except ServiceError as err:
        pytest.skip(str(err))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _service(lambda: start_tansu(tmp_path_factory.mktemp("tansu")))


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _service(lambda: start_redis(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained on a generated 10-label corpus."""
    return tiny_model(tmp_path_factory.mktemp("model"), docs=800, epochs=6)


@dataclass
class Stream:
    """A fresh topic, DLQ topic and consumer group on the shared broker, with helpers."""

    broker: str
    topic: str
    dlq: str
    group: str
    redis_url: str

    def produce(self, values: list[bytes], keys: list[bytes] | None = None,
                compression_type: str | None = None) -> None:
        producer = kafka_clients.producer(KafkaSettings(kafka_bootstrap_servers=self.broker),
                                          compression_type=compression_type)
        for i, value in enumerate(values):
            producer.send(self.topic, value=value, key=keys[i] if keys else None)
        producer.flush()
        producer.close()

    def documents(self, n: int, start: int = 0) -> list[tuple[str, bytes]]:
        """(id, message value) pairs of generated documents; ids are unique to this stream, so a test
        never counts documents another test wrote to the shared Redis."""
        corpus = generate_corpus(start + n, 10, seed=3)
        return [(f"{self.topic}:{corpus.ids[i]}",
                 json.dumps({"id": f"{self.topic}:{corpus.ids[i]}", "text": corpus.texts[i]}).encode())
                for i in range(start, start + n)]

    def committed(self) -> dict[int, int]:
        """Committed offset per partition of the input topic for the stream's group."""
        # A group member that never subscribes: it reads the group's offsets without joining it.
        reader = KafkaConsumer(bootstrap_servers=self.broker, group_id=self.group, enable_auto_commit=False)
        try:
            return {p: reader.committed(TopicPartition(self.topic, p)) or 0 for p in range(PARTITIONS)}
        finally:
            reader.close(autocommit=False)


@pytest.fixture()
def stream(tansu: Service, redis_service: Service) -> Stream:
    name = uuid.uuid4().hex[:8]
    settings = KafkaSettings(kafka_bootstrap_servers=tansu.address)
    create_topic(settings, f"docs-{name}", PARTITIONS)
    create_topic(settings, f"dlq-{name}", 1)
    return Stream(tansu.address, f"docs-{name}", f"dlq-{name}", f"group-{name}",
                  f"redis://{redis_service.address}/0")


class WorkerProcess(ServeProcess):
    """``tagger serve`` on the test's stream, configured through TAGGER_* env vars."""

    def __init__(self, stream: Stream, model: Path, log_path: Path, **overrides: str) -> None:
        super().__init__({**FAST_GROUP, "TAGGER_KAFKA_BOOTSTRAP_SERVERS": stream.broker,
                          "TAGGER_INPUT_TOPIC": stream.topic, "TAGGER_DLQ_TOPIC": stream.dlq,
                          "TAGGER_GROUP_ID": stream.group, "TAGGER_REDIS_URL": stream.redis_url,
                          "TAGGER_MODEL_DIR": str(model), "TAGGER_REDIS_RETRY_MAX_S": "0.5", **overrides}, log_path)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(lambda: self.process.poll() is not None or self.get("/readyz")[0] == 200, timeout,
                   f"worker ready (log {self.log_path})")
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]


@pytest.fixture()
def start_worker(stream: Stream, model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        worker = WorkerProcess(stream, model_dir, tmp_path / f"worker-{len(started)}.log", **overrides)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def tagged_ids(redis_url: str, ids: list[str]) -> set[str]:
    """Those ids whose tags are in Redis."""
    return chaos.tagged_ids(redis.Redis.from_url(redis_url), ids)
