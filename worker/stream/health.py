"""What the worker says about Kafka: an unreachable broker, and record batches that cannot be decoded.

While the group coordinator is unreachable, a warning is logged at growing intervals (1, 2, 4 ... s) and
a line when the broker is back; kafka-python reconnects by itself with backoff. A fetched record batch
that cannot be decoded (a codec library missing, a corrupt batch) is counted and logged with every
assigned partition's position, and fails readiness for ``UNDECODABLE_UNREADY_S``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from kafka import TopicPartition

from worker.metrics import WorkerMetrics

__all__ = ["UNDECODABLE_UNREADY_S", "KafkaHealth"]

log = logging.getLogger(__name__)
UNDECODABLE_UNREADY_S = 30.0  # /readyz fails this long after a record batch failed to decode
_CHECK_EVERY_S = 1.0


class KafkaHealth:
    """Broker reachability (checked through ``reachable``) and undecodable batches, on ``clock``."""

    def __init__(self, metrics: WorkerMetrics, reachable: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics, self.reachable, self.clock = metrics, reachable, clock
        self.check_at, self.next_warning_s = 0.0, 1.0
        self.unreachable_since: float | None = None
        self.undecodable_at = float("-inf")  # when a fetched record batch last failed to decode

    def check(self) -> None:
        """Once a second: warn (at growing intervals) while the group coordinator is unreachable."""
        now = self.clock()
        if now < self.check_at:
            return
        self.check_at = now + _CHECK_EVERY_S
        reachable = self.reachable()
        self.metrics.kafka_reachable.set(reachable)
        if reachable:
            if self.unreachable_since is not None and self.next_warning_s > 1.0:  # it was warned about
                log.info("kafka broker reachable again after %.1f s", now - self.unreachable_since)
            self.unreachable_since, self.next_warning_s = None, 1.0
        elif self.unreachable_since is None:
            self.unreachable_since = now
        elif now - self.unreachable_since >= self.next_warning_s:
            log.warning("kafka broker unreachable for %.0f s (group coordinator unknown); waiting, the client "
                        "reconnects with backoff", now - self.unreachable_since)
            self.next_warning_s *= 2

    def undecodable(self, err: Exception, positions: Mapping[TopicPartition, int | None]) -> None:
        """A fetched record batch cannot be decoded (the loop pauses its partition so the others go on).
        Count it, log it with every assigned partition's position (the stuck one stops advancing), and fail
        readiness for a while."""
        self.undecodable_at = self.clock()
        self.metrics.undecodable.inc()
        shown = ", ".join(f"{tp.topic}/{tp.partition}@{offset}" for tp, offset in positions.items())
        log.error("cannot decode a fetched record batch (%s: %s); its partition cannot advance until the "
                  "cause is fixed (a codec library missing: install rankae-tagger's dependencies; a corrupt "
                  "batch: see the broker). Positions: %s", type(err).__name__, err, shown)

    def decoding(self) -> bool:
        """No record batch failed to decode in the last ``UNDECODABLE_UNREADY_S``."""
        return self.clock() - self.undecodable_at > UNDECODABLE_UNREADY_S
