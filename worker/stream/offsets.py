"""Offsets have one owner: what was written and awaits its commit, per partition, and when to commit it.

The loop stores a batch's offsets once its results and dead letters are acknowledged (steps 4-5), then
asks :meth:`Offsets.commit_if_due`. A commit to an unreachable broker gives up after
``COMMIT_TIMEOUT_MS``; its offsets are kept and committed later (with backoff, merged with newer ones), so
the loop never hangs on a commit. A commit the group rejects (it rebalanced) is dropped: the partitions'
new owner processes those records again, and since writes are idempotent Redis ends up the same.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from worker.metrics import WorkerMetrics
from worker.stream.deadline import KAFKA_RETRY_MAX_S

__all__ = ["COMMIT_TIMEOUT_MS", "Offsets"]

log = logging.getLogger(__name__)
COMMIT_TIMEOUT_MS = 2_000  # how long one commit waits for an unreachable broker before the loop goes on
_FIRST_RETRY_S = 0.5


class Offsets:
    """Pending offsets per partition (written, not yet committed) and the commit's retry schedule."""

    def __init__(self, consumer: KafkaConsumer, metrics: WorkerMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer, self.metrics, self.clock = consumer, metrics, clock
        self.pending: dict[TopicPartition, OffsetAndMetadata] = {}
        self.retry_delay, self.retry_at = _FIRST_RETRY_S, 0.0

    def store(self, last_offsets: Mapping[tuple[str, int], int]) -> None:
        """Hold each ``(topic, partition)``'s last written offset; its commit will be that offset + 1."""
        self.pending.update({TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
                             for (topic, partition), offset in last_offsets.items()})

    def commit_if_due(self) -> None:
        """Commit what is pending unless a failed commit's backoff has not run out yet."""
        if self.pending and self.clock() >= self.retry_at:
            self._commit()

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget revoked partitions: their new owner starts from their last committed offset."""
        for tp in partitions:
            self.pending.pop(tp, None)
            with contextlib.suppress(KeyError):  # no batch was committed on it yet
                self.metrics.lag.remove(tp.topic, str(tp.partition))

    def _commit(self) -> None:
        offsets = dict(self.pending)
        try:
            self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as err:
            if isinstance(err, KafkaTimeoutError) or err.retriable:
                self._commit_later(offsets, err)
                return
            self.metrics.commit_failures.labels("rejected").inc()
            log.warning("commit failed (%s); records will be processed again by their new owner", err)
            self.pending.clear()
            return
        if self.retry_delay > _FIRST_RETRY_S:
            log.info("offsets committed again after the broker came back: %s", _names(offsets))
        self.pending.clear()  # nothing adds to it while commit() runs: rebalance callbacks run in poll()
        self.retry_delay, self.retry_at = _FIRST_RETRY_S, 0.0
        self._update_lag(offsets)

    def _commit_later(self, offsets: dict[TopicPartition, OffsetAndMetadata], err: KafkaError) -> None:
        self.metrics.commit_failures.labels("unreachable").inc()
        log.warning("kafka broker unreachable: offsets of %s not committed (%s); they are kept, consumption goes "
                    "on, next commit attempt in %.1f s", _names(offsets), type(err).__name__, self.retry_delay)
        self.retry_at = self.clock() + self.retry_delay
        self.retry_delay = min(self.retry_delay * 2, KAFKA_RETRY_MAX_S)

    def _update_lag(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, committed in offsets.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - committed.offset))


def _names(offsets: dict[TopicPartition, OffsetAndMetadata]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}@{o.offset}" for tp, o in sorted(offsets.items()))
