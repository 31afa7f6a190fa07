"""Steps 3 and 4 of the loop: the model tags a batch's documents at once; the results go to Redis.

Every result of a batch is written in one Redis pipeline. If Redis fails, the write is retried with
exponential backoff (up to ``redis_retry_max_s``); between tries the loop's ``wait`` pauses consumption
and polls (keeping the group membership), and the results of partitions revoked meanwhile are dropped.
An error no retry can fix (credentials, a cluster node without ``TAGGER_REDIS_CLUSTER``, keys across
slots: :func:`~worker.store.connection.permanent`) stops the worker with a StoreError saying what to change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

import redis

from model.errors import StoreError
from model.tagger import Tagger
from worker.metrics import WorkerMetrics
from worker.store.connection import permanent
from worker.store.writer import TagRecord, TagWriter
from worker.stream.batcher import Batch
from worker.stream.deadline import Backoff, Deadline

__all__ = ["Tagging", "Wait"]

log = logging.getLogger(__name__)
# Pause consumption for the given seconds while Redis is away; returns the (topic, partition)s still owned.
Wait = Callable[[float], Collection[tuple[str, int]]]


class Tagging:
    """Predicts a batch's tags and writes them, retrying the write while Redis is away."""

    def __init__(self, writer: TagWriter, top_k: int, metrics: WorkerMetrics, stopping: threading.Event,
                 retry_max_s: float, shutdown_timeout_s: float) -> None:
        self.writer, self.top_k, self.metrics, self.stopping = writer, top_k, metrics, stopping
        self.retry_max_s, self.shutdown_timeout_s = retry_max_s, shutdown_timeout_s

    def predict(self, tagger: Tagger, batch: Batch) -> list[TagRecord]:
        """Step 3: featurize the batch's documents and run the model once; one record per document."""
        good = batch.good()
        if not good:
            return []
        started = time.perf_counter()
        tags = tagger.predict([item.document.text for item in good if item.document], self.top_k)
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(good))
        return [TagRecord(item.document.id, doc_tags, item.document.text, item.topic, item.partition,
                          item.offset, item.timestamp_ms)
                for item, doc_tags in zip(good, tags, strict=True) if item.document]

    def write(self, records: list[TagRecord], version: str, deadline: Deadline, wait: Wait) -> None:
        """Step 4: write every record in one pipeline, retrying until Redis answers (Abandoned past ``deadline``)."""
        if not records:
            return
        backoff = Backoff(deadline, self.stopping, self.shutdown_timeout_s, self.retry_max_s)
        while True:
            started = time.perf_counter()
            try:
                written = self.writer.write(records, version)
            except redis.RedisError as err:
                fix = permanent(err)
                if fix is not None:
                    raise StoreError(f"cannot write tags: {fix}") from err
                records = self._wait(records, backoff, err, wait)
                continue
            self._observe(records, written, started)
            return

    def _wait(self, records: list[TagRecord], backoff: Backoff, err: redis.RedisError, wait: Wait) -> list[TagRecord]:
        self.metrics.redis_errors.inc()
        delay = backoff.next_delay(err)
        log.warning("redis write failed (%s); pausing consumption, retrying in %.1f s", err, delay)
        owned = wait(delay)
        return [r for r in records if (r.topic, r.partition) in owned]

    def _observe(self, records: list[TagRecord], written: list[bool], started: float) -> None:
        acked = time.time()
        self.metrics.redis_write.observe(time.perf_counter() - started)
        self.metrics.stale_writes.inc(written.count(False))
        self.metrics.messages.labels("tagged").inc(len(records))
        for record in records:
            self.metrics.end_to_end.observe(max(0.0, acked - record.timestamp_ms / 1000))
