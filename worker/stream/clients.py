"""The loop's clients, built before the loop: the model, Redis, the dead-letter producer and the consumer."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer

from worker.metrics import WorkerMetrics
from worker.settings import Settings
from worker.store.connection import connect as connect_redis
from worker.store.writer import TagWriter
from worker.stream import kafka
from worker.stream.watcher import ModelWatcher

__all__ = ["Clients", "connect"]


@dataclass(frozen=True)
class Clients:
    """Everything the loop talks to, connected."""

    models: ModelWatcher
    writer: TagWriter
    producer: KafkaProducer
    consumer: KafkaConsumer


def connect(settings: Settings, metrics: WorkerMetrics, stopping: threading.Event) -> Clients | None:
    """Load the model, then connect Redis, the producer and the consumer; None if ``stopping`` is set first.

    An unreachable Kafka broker is retried with backoff until it answers or the worker is stopped."""
    models = ModelWatcher.start(settings.model, metrics, stopping)
    writer = TagWriter(connect_redis(settings.redis), settings.redis.tags_ttl_s, settings.redis.doc_ttl_s)
    producer = kafka.connect_with_backoff(lambda: kafka.producer(settings.kafka), stopping, "dead-letter producer")
    if producer is None:
        return None
    with contextlib.ExitStack() as on_failure:  # no consumer (stopped, or an error): close the producer
        on_failure.callback(producer.close, timeout=5)
        consumer = kafka.connect_with_backoff(lambda: kafka.consumer(settings.kafka, settings.stream.max_batch_docs),
                                              stopping, "consumer")
        if consumer is None:
            return None
        on_failure.pop_all()
    return Clients(models, writer, producer, consumer)
