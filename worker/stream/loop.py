"""The streaming worker: Kafka in, batched Rank-AE inference, top-k tags to Redis, offsets committed.

The loop, in order, and why each step sits where it does:

1. ``poll`` with a timeout no longer than the open batch's remaining wait, so a deadline is never
   overslept (and no wait at all while a batch is being tagged, so its results are written as soon as
   they are ready).
2. Decode each record. A bad one is produced (asynchronously) to the dead-letter topic with a
   ``reason`` header, and still joins the batch, so its offset is committed with its neighbours'.
3. When the batch is due (max documents, max tokens, or max wait since its first record; or the stream
   went idle): launch it on the prediction thread (featurize all its documents, run the model once, on
   the model's device), which tags it while this thread consumes the next batch (``pipeline``). At most
   one batch is in flight: the next one launches once the previous one's tags are taken, and that
   previous batch then goes on to steps 4-6 here, on the loop's thread, while the new one is tagged.
4. Write every result in one Redis pipeline. If Redis fails: pause the partitions, retry with
   exponential backoff (polling meanwhile keeps the group membership; records that still arrive, from
   newly assigned partitions, wait in the next batch), resume once a write succeeds. Results of partitions
   this worker no longer owns are never written or committed.
5. Flush the dead-letter producer: a bad message is durable in the DLQ before its offset is committed; one
   the DLQ refuses is resent with backoff, its offset held back (a message too large for the producer is
   dead-lettered cut, with its original size in a ``truncated_from`` header).
6. Commit, per partition, the batch's last offset + 1 — only after 4 and 5 succeeded. Batches are written
   and committed in the order they were consumed, so nothing unwritten is ever committed: delivery is
   at-least-once and Redis writes are idempotent. If the broker is unreachable, the commit gives up after
   ``COMMIT_TIMEOUT_MS``; its offsets are kept and committed later (with backoff, merged with newer ones),
   so the loop never hangs on a commit and SIGTERM stays bounded.

While the group coordinator is unreachable the loop logs a warning at growing intervals (1, 2, 4 ... s)
and says when the broker is back; kafka-python reconnects by itself with backoff.

A new model version (``TAGGER_MODEL_DIR`` is a registry whose ``CURRENT`` changed) is loaded by a
background thread and swapped in between batches (when idle, or when the next batch launches), so
every batch is tagged by exactly one fully loaded model and no record is skipped or tagged twice.

On rebalance, the batch in flight and the open batch are written and committed (3-6) before partitions
are revoked; if a write fails they are dropped uncommitted (both: a batch is never committed past one that
was not written) and the partitions' new owner processes them again. On SIGTERM/SIGINT (``stop()``):
polling stops, both batches are written within ``shutdown_timeout_s``, the consumer commits and leaves.

Steps live in: batcher (1, 3), intake (2), pipeline and tagging (3, 4), dead_letters (5), offsets (6),
deadline (the bounds on 4-5), health (broker warnings), watcher (hot swap); clients are connected before
the loop (service).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError

from worker.metrics import WorkerMetrics
from worker.settings import Settings
from worker.stream.batcher import Batch, Batcher
from worker.stream.clients import Clients
from worker.stream.dead_letters import DeadLetters
from worker.stream.deadline import Abandoned, Deadline
from worker.stream.guard import BadInputGuard
from worker.stream.health import KafkaHealth
from worker.stream.intake import Intake
from worker.stream.kafka import coordinator_reachable, undecodable_partition
from worker.stream.offsets import COMMIT_TIMEOUT_MS, Offsets
from worker.stream.pipeline import Predicted, Predictor
from worker.stream.tagging import Tagging

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker(ConsumerRebalanceListener):
    """The loop over connected clients; ``run()`` blocks until ``stopping`` is set (or a fatal error)."""

    def __init__(self, settings: Settings, clients: Clients, metrics: WorkerMetrics, stopping: threading.Event) -> None:
        kafka, s = settings.kafka, settings.stream
        self.settings, self.metrics, self.stopping = settings, metrics, stopping
        self.consumer, self.models = clients.consumer, clients.models
        self.batcher = Batcher(s.max_batch_docs, s.max_batch_tokens, s.max_wait_ms / 1000, s.idle_wait_ms / 1000)
        self.dead_letters = DeadLetters(clients.producer, kafka.dlq_topic, metrics, stopping, s.shutdown_timeout_s)
        guard = BadInputGuard(s.bad_window, s.bad_share_limit, kafka.input_topic, kafka.dlq_topic)
        self.intake = Intake(s.max_text_bytes, self.dead_letters, guard)
        self.tagging = Tagging(clients.writer, settings.model.top_k, metrics, stopping, s.redis_retry_max_s,
                               s.shutdown_timeout_s)
        self.predictor = Predictor(self.tagging, self.models)
        self.offsets = Offsets(clients.consumer, metrics)
        self.health = KafkaHealth(metrics, functools.partial(coordinator_reachable, clients.consumer))
        self.assigned: set[TopicPartition] = set()
        self.stuck: set[TopicPartition] = set()  # paused for good: a record batch there cannot be decoded
        self.in_retry = False  # polling inside a Redis retry: a rebalance then must not flush the batch again

    def ready(self) -> bool:
        """Partitions assigned, none stuck on a record batch it cannot decode (the /readyz check)."""
        return bool(self.assigned) and self.health.decoding() and not self.stuck

    def run(self) -> None:
        """Poll → batch → predict → write → commit until stopped; then the last batches, bounded, and close."""
        try:
            self.consumer.subscribe([self.settings.kafka.input_topic], listener=self)
            log.info("worker started: topic=%s group=%s model=%s device=%s", self.settings.kafka.input_topic,
                     self.settings.kafka.group_id, self.models.served.version, self.models.served.device)
            while not self.stopping.is_set():
                fetched = self._poll_once()
                self.health.check()
                self.offsets.commit_if_due()
                if self.batcher.due():
                    self._flush(Deadline.unbounded())
                elif self.predictor.done() or (self.predictor.busy() and not fetched):
                    self._finish(Deadline.unbounded())  # nothing else to do: wait for its tags, write them
                elif self.models.pending() and self.batcher.batch is None:
                    self.models.swap()  # idle: swap now rather than with the next batch
            self._drain(Deadline.from_timeout(self.settings.stream.shutdown_timeout_s))
        except Abandoned:
            log.warning("shutdown: the last batch could not be written in time; it stays uncommitted")
        finally:
            self.predictor.close()
            self.consumer.close(autocommit=False, timeout_ms=COMMIT_TIMEOUT_MS)  # bounded if the broker is away
            self.dead_letters.close()

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Partitions were assigned: remember them (readiness, lag)."""
        partitions = set(assigned)
        self.assigned |= partitions
        self.metrics.assigned.set(len(self.assigned))
        log.info("assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Partitions are being taken away: write and commit what we hold, once, before letting go."""
        partitions = set(revoked)
        if not self.in_retry:
            try:
                self._drain(Deadline.from_timeout(0))
            except Abandoned:
                log.warning("rebalance: batch not written; the partitions' next owner will process it")
        self.assigned -= partitions
        self.stuck -= partitions  # its next owner meets the batch again, and reports it
        self.metrics.assigned.set(len(self.assigned))
        self.offsets.drop(partitions)

    def _poll_once(self) -> bool:
        """Steps 1-2; whether the poll brought any record. It does not wait while a batch is in flight."""
        timeout_ms = 0 if self.predictor.busy() else int(self.batcher.poll_wait() * 1000)
        try:
            fetched = self.consumer.poll(timeout_ms=timeout_ms)
        except (UnsupportedCodecError, CorruptRecordError) as err:
            self.health.undecodable(err, {tp: self.consumer.position(tp) for tp in sorted(self.assigned)})
            stuck = undecodable_partition(self.consumer)
            if stuck is None:
                self.stopping.wait(1.0)  # the stuck partition's fetch fails again at once: back off
            else:  # pause it for good, or its records, first in line, hold up every other partition
                self.stuck.add(stuck)
                self.consumer.pause(stuck)
            return False
        received = time.time()
        for messages in fetched.values():
            for message in messages:
                self.metrics.consume_delay.observe(max(0.0, received - message.timestamp / 1000))
                self.batcher.add(self.intake.item(message))
                if self.batcher.full():
                    self._flush(Deadline.unbounded())
        if not fetched:
            self.batcher.idle()  # the stream is idle: the open batch need not wait for its deadline
        return bool(fetched)

    def _flush(self, deadline: Deadline) -> None:
        """Launch the open batch (step 3) once the one in flight is taken; then steps 4-6 for that one."""
        batch = self.batcher.take()
        if batch is None:
            return
        previous = self.predictor.take()
        self.metrics.batch_wait.observe(max(0.0, time.monotonic() - batch.opened_at))
        self.predictor.launch(batch)  # tagged while the previous batch is written
        if previous is not None:
            self._write(previous, deadline)

    def _finish(self, deadline: Deadline) -> None:
        """Steps 4-6 for the batch in flight, once it has its tags."""
        done = self.predictor.take()
        if done is not None:
            self._write(done, deadline)

    def _drain(self, deadline: Deadline) -> None:
        """Write and commit every batch held (in flight, then open); Abandoned drops whatever is left."""
        try:
            self._flush(deadline)
            self._finish(deadline)
        except Abandoned:
            self.predictor.discard()  # never commit a later batch past one that was not written
            raise

    def _write(self, done: Predicted, deadline: Deadline) -> None:
        """Steps 4-6 for a tagged batch; raises Abandoned if the write cannot finish by ``deadline``."""
        batch, owned = done.batch, {(tp.topic, tp.partition) for tp in self.assigned}
        batch.items = [item for item in batch.items if (item.topic, item.partition) in owned]
        records = [r for r in done.records if (r.topic, r.partition) in owned]
        self.tagging.write(records, done.version, deadline, functools.partial(self._wait_for_redis, batch))
        self._resume()
        self.dead_letters.flush(deadline)
        self.offsets.store(batch.last_offsets())
        self.offsets.commit_if_due()

    def _wait_for_redis(self, batch: Batch, delay: float) -> set[tuple[str, int]]:
        """Pause, poll for ``delay`` (keeps group membership); drop the batch's items of revoked partitions."""
        self.in_retry = True
        try:
            self.consumer.pause(*self.consumer.assignment())
            for messages in self.consumer.poll(timeout_ms=int(delay * 1000)).values():
                for message in messages:  # from partitions assigned during the pause: next batch
                    self.batcher.add(self.intake.item(message))
            self.consumer.pause(*self.consumer.assignment())
        finally:
            self.in_retry = False
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        batch.items = [item for item in batch.items if (item.topic, item.partition) in owned]
        return owned

    def _resume(self) -> None:
        paused = self.consumer.paused() - self.stuck
        if paused:
            self.consumer.resume(*paused)
            log.info("redis is back; consumption resumed")
