"""Dead letters: a bad message goes to the dead-letter topic, acknowledged there before its offset is committed.

Each is sent asynchronously as it is decoded, with ``reason``, ``detail`` and ``source``
(``topic/partition/offset``) headers. Before a batch's offsets are committed (step 5 of the loop),
:meth:`DeadLetters.flush` waits for every acknowledgement; one the topic refuses is resent with backoff
and holds the commit back. A message too large for the producer is sent cut to ``DLQ_VALUE_MAX`` bytes,
with its original size in a ``truncated_from`` header.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NamedTuple

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from worker.metrics import WorkerMetrics
from worker.stream.deadline import KAFKA_RETRY_MAX_S, Backoff, Deadline
from worker.stream.kafka import FETCH_MAX_BYTES
from worker.stream.messages import BadMessage

__all__ = ["DLQ_VALUE_MAX", "DeadLetter", "DeadLetters"]

log = logging.getLogger(__name__)
# The producer refuses records over FETCH_MAX_BYTES; a larger poison message (fetchable: one oversized
# record is always returned) is dead-lettered cut to this, with its original size in a header.
DLQ_VALUE_MAX = FETCH_MAX_BYTES - 64 * 1024


class DeadLetter(NamedTuple):
    """A bad message as it goes to the DLQ: its value (cut to ``DLQ_VALUE_MAX``), key and reason headers."""

    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, message: Any, bad: BadMessage) -> DeadLetter:
        """The dead letter of a consumed ``message`` (a kafka-python ConsumerRecord) that ``bad`` describes."""
        headers = [("reason", bad.reason.encode()), ("detail", bad.detail.encode()[:1000]),
                   ("source", f"{message.topic}/{message.partition}/{message.offset}".encode())]
        value = message.value
        if value is not None and len(value) > DLQ_VALUE_MAX:  # the producer would refuse the whole record
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:DLQ_VALUE_MAX]
        return cls(value, message.key, headers)


class DeadLetters:
    """Sends dead letters and tracks them until the topic has acknowledged every one."""

    def __init__(self, producer: KafkaProducer, topic: str, metrics: WorkerMetrics, stopping: threading.Event,
                 shutdown_timeout_s: float) -> None:
        self.producer, self.topic, self.metrics = producer, topic, metrics
        self.stopping, self.shutdown_timeout_s = stopping, shutdown_timeout_s
        self.unacknowledged: list[tuple[DeadLetter, FutureRecordMetadata | KafkaError]] = []

    def send(self, message: Any, bad: BadMessage) -> None:
        """Log, count and send (asynchronously) the dead letter of ``message``."""
        log.warning("bad message topic=%s partition=%d offset=%d: %s", message.topic, message.partition,
                    message.offset, bad)
        self._send(DeadLetter.of(message, bad))
        self.metrics.messages.labels("dead_lettered").inc()
        self.metrics.bad_messages.labels(bad.reason).inc()

    def flush(self, deadline: Deadline) -> None:
        """Step 5: every dead letter acknowledged; refused ones are resent (raises Abandoned past ``deadline``)."""
        backoff = Backoff(deadline, self.stopping, self.shutdown_timeout_s, KAFKA_RETRY_MAX_S)
        while self.unacknowledged:
            self.producer.flush()
            refused = [(letter, sent if isinstance(sent, KafkaError) else sent.exception)
                       for letter, sent in self.unacknowledged if isinstance(sent, KafkaError) or sent.failed()]
            self.unacknowledged = []
            if refused:
                self._resend(refused, backoff)

    def close(self) -> None:
        """Close the producer (bounded: a broker that is away cannot hold the shutdown)."""
        self.producer.close(timeout=5)

    def _resend(self, refused: list[tuple[DeadLetter, Any]], backoff: Backoff) -> None:
        err = refused[0][1]
        self.metrics.dlq_failures.inc(len(refused))
        delay = backoff.next_delay(err)
        log.error("dead-letter topic %r refused %d message(s) (%s); their offsets stay uncommitted and they are "
                  "resent in %.1f s (if the broker says too large, raise the topic's max.message.bytes)",
                  self.topic, len(refused), err, delay)
        self.stopping.wait(delay)
        for letter, _ in refused:
            self._send(letter)

    def _send(self, letter: DeadLetter) -> None:
        sent: FutureRecordMetadata | KafkaError
        try:
            sent = self.producer.send(self.topic, value=letter.value, key=letter.key, headers=letter.headers)
        except KafkaError as err:  # e.g. the DLQ topic's metadata did not arrive in time: resent at the flush
            sent = err
        self.unacknowledged.append((letter, sent))
