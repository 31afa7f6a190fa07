"""The streaming worker: Kafka in, batched Rank-AE inference, top-k tags to Redis, offsets committed.

The loop, in order, and why each step sits where it does:

1. ``poll`` with a timeout no longer than the open batch's remaining wait, so a deadline is never
   overslept.
2. Decode each record. A bad one is produced (asynchronously) to the dead-letter topic with a
   ``reason`` header, and still joins the batch, so its offset is committed with its neighbours'.
3. When the batch is due (max documents, max tokens, or max wait since its first record): featurize
   all its documents and run the model once, on the model's device.
4. Write every result in one Redis pipeline. If Redis fails: pause the partitions, retry with
   exponential backoff (polling meanwhile keeps the group membership; records that still arrive, from
   newly assigned partitions, wait in the next batch), resume once a write succeeds.
5. Flush the dead-letter producer: a bad message is durable in the DLQ before its offset is committed; one
   the DLQ refuses is resent with backoff, its offset held back (a message too large for the producer is
   dead-lettered cut, with its original size in a ``truncated_from`` header).
6. Commit, per partition, the batch's last offset + 1 — only after 4 and 5 succeeded. Nothing unwritten
   is ever committed, so delivery is at-least-once and Redis writes are idempotent. If the broker is
   unreachable, the commit gives up after ``COMMIT_TIMEOUT_MS``; its offsets are kept and committed later
   (with backoff, merged with newer ones), so the loop never hangs on a commit and SIGTERM stays bounded.

While the group coordinator is unreachable the loop logs a warning at growing intervals (1, 2, 4 ... s)
and says when the broker is back; kafka-python reconnects by itself with backoff.

A new model version (``TAGGER_MODEL_DIR`` is a registry whose ``CURRENT`` changed) is loaded by a
background thread and swapped in between batches (when idle, or at the start of the next flush), so
every batch is tagged by exactly one fully loaded model and no record is skipped or tagged twice.

On rebalance, the open batch is flushed (3-6) before partitions are revoked; if that fails it is dropped
uncommitted and the partitions' new owner processes it again. On SIGTERM/SIGINT (``stop()``): polling
stops, the open batch is flushed within ``shutdown_timeout_s``, the consumer commits and leaves the group.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, NamedTuple

import redis
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CorruptRecordError, KafkaError, KafkaTimeoutError, UnsupportedCodecError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from model.errors import TaggerError
from model.tagger import Tagger
from worker import kafka as kafka_clients
from worker.batcher import Batch, Batcher, Item
from worker.config import WorkerSettings
from worker.messages import BadMessage, decode_document
from worker.metrics import WorkerMetrics, serve_http
from worker.registry import Registry, resolve
from worker.store import TagRecord, TagWriter, connect

__all__ = ["COMMIT_TIMEOUT_MS", "BadInputFlood", "Worker"]

log = logging.getLogger(__name__)
UNDECODABLE_UNREADY_S = 30.0  # /readyz fails this long after a record batch failed to decode
COMMIT_TIMEOUT_MS = 2_000  # how long one commit waits for an unreachable broker before the loop goes on
_KAFKA_RETRY_MAX_S = 5.0  # longest pause between commit retries while the broker is unreachable
# The producer refuses records over FETCH_MAX_BYTES; a larger poison message (fetchable: one oversized
# record is always returned) is dead-lettered cut to this, with its original size in a header.
DLQ_VALUE_MAX = kafka_clients.FETCH_MAX_BYTES - 64 * 1024


class BadInputFlood(TaggerError):
    """Too large a share of recent messages was bad: most likely a misconfigured topic or producer."""


class _DeadLetter(NamedTuple):
    """A bad message as it goes to the DLQ: its value (cut to ``DLQ_VALUE_MAX``), key and reason headers."""

    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]


class _Abandoned(Exception):
    """A batch could not be written in time; it stays uncommitted and will be consumed again."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.worker.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.worker.on_assigned(set(assigned))


class Worker:
    """One tagging worker; ``run()`` blocks until ``stop()`` (or a fatal error)."""

    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.stopping = threading.Event()
        self.batcher = Batcher(settings.max_batch_docs, settings.max_batch_tokens, settings.max_wait_ms / 1000)
        self.recent_bad: deque[bool] = deque(maxlen=settings.bad_window)
        self.bad_in_window = 0  # running count of True in recent_bad: O(1) per message, not a sum
        self.assigned: set[TopicPartition] = set()
        self.tagger: Tagger | None = None
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.writer: TagWriter | None = None
        self.http: Any = None
        self._in_retry = False
        self._next_tagger: Tagger | None = None  # loaded by the watcher, swapped in by the loop
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}  # written, not yet committed
        self._dead_letters: list[tuple[_DeadLetter, FutureRecordMetadata | KafkaError]] = []  # not yet acknowledged
        self._commit_delay, self._commit_retry_at = 0.5, 0.0
        self._broker_check_at, self._unreachable_since, self._next_warning_s = 0.0, 0.0, 1.0
        self._undecodable_at = float("-inf")  # when a fetched record batch last failed to decode

    # ------------------------------------------------------------------ lifecycle

    def ready(self) -> bool:
        """Model loaded, partitions assigned, and no record batch that failed to decode in the last
        ``UNDECODABLE_UNREADY_S`` (the /readyz check)."""
        decoding = time.monotonic() - self._undecodable_at > UNDECODABLE_UNREADY_S
        return self.tagger is not None and bool(self.assigned) and decoding

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close (safe from a signal handler)."""
        self.stopping.set()

    def run(self) -> None:
        """Start everything, then poll → batch → predict → write → commit until stopped."""
        s = self.settings
        self.http = serve_http(self.metrics.registry, s.metrics_host, s.metrics_port, self.ready)
        try:
            self._start()
            while not self.stopping.is_set():
                self._poll_once()
                self._check_broker()
                self._commit_if_due()
                if self.batcher.due():
                    self._flush()
                elif self._next_tagger is not None and self.batcher.batch is None:
                    self._swap_model()  # idle: swap now rather than with the next batch
            self._flush(deadline=time.monotonic() + self.settings.shutdown_timeout_s)
        except _Abandoned:
            log.warning("shutdown: the last batch could not be written in time; it stays uncommitted")
        finally:
            self._close()

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (useful when the setting was 0)."""
        return int(self.http.server_address[1])

    def _start(self) -> None:
        s = self.settings
        self.tagger = Tagger.load(resolve(s.model_dir), s.device or None)
        self.metrics.set_model(self.tagger.version, str(self.tagger.device))
        if Registry.is_registry(s.model_dir):
            threading.Thread(target=self._watch_registry, name="model-watcher", daemon=True).start()
        self.writer = TagWriter(connect(s), s.tags_ttl_s, s.doc_ttl_s)
        self.producer = kafka_clients.connect_with_backoff(lambda: kafka_clients.producer(s), self.stopping,
                                                           "dead-letter producer")
        self.consumer = kafka_clients.connect_with_backoff(lambda: kafka_clients.consumer(s), self.stopping,
                                                           "consumer")
        if self.consumer is not None:
            self.consumer.subscribe([s.input_topic], listener=_Listener(self))
        log.info("worker started: topic=%s group=%s model=%s device=%s", s.input_topic, s.group_id,
                 self.tagger.version, self.tagger.device)

    def _close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False, timeout_ms=COMMIT_TIMEOUT_MS)  # bounded if the broker is away
        if self.producer is not None:
            self.producer.close(timeout=5)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        log.info("worker stopped")

    def _watch_registry(self, every_s: float = 1.0) -> None:
        """Load the registry's new current version in the background; the loop swaps it in."""
        registry = Registry(self.settings.model_dir)
        failed = wanted = ""
        while not self.stopping.wait(every_s):
            try:
                wanted = registry.current()
                loaded = self._next_tagger or self.tagger
                if loaded is None or wanted in (loaded.version, failed):
                    continue
                started = time.perf_counter()
                self._next_tagger = Tagger.load(registry.path(wanted), self.settings.device or None)
                log.info("model %s loaded in %.2f s; swapping in at the next batch", wanted,
                         time.perf_counter() - started)
            except TaggerError as err:
                failed = wanted
                log.error("cannot load model version %s, still serving the current one: %s", wanted, err)

    def _swap_model(self) -> None:
        incoming, self._next_tagger = self._next_tagger, None
        if incoming is None or self.tagger is None or incoming.version == self.tagger.version:
            return
        log.info("model swapped: %s -> %s", self.tagger.version, incoming.version)
        self.tagger = incoming
        self.metrics.set_model(incoming.version, str(incoming.device))
        self.metrics.model_swaps.inc()

    # ------------------------------------------------------------------ rebalance

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Partitions were assigned: remember them (readiness, lag)."""
        self.assigned |= partitions
        self.metrics.assigned.set(len(self.assigned))
        log.info("assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Partitions are being taken away: flush and commit what we hold, once, before letting go."""
        if not self._in_retry:
            try:
                self._flush(deadline=time.monotonic())
            except _Abandoned:
                log.warning("rebalance: batch not written; the partitions' next owner will process it")
        self.assigned -= partitions
        self.metrics.assigned.set(len(self.assigned))
        for tp in partitions:
            self._pending.pop(tp, None)  # the partition's new owner starts from its last committed offset
            with contextlib.suppress(KeyError):  # no batch was committed on it yet
                self.metrics.lag.remove(tp.topic, str(tp.partition))

    # ------------------------------------------------------------------ the loop

    def _poll_once(self) -> None:
        assert self.consumer is not None
        left = self.batcher.time_left()
        timeout_ms = 100 if left is None else max(0, min(100, int(left * 1000)))
        try:
            fetched = self.consumer.poll(timeout_ms=timeout_ms)
        except (UnsupportedCodecError, CorruptRecordError) as err:
            self._undecodable(err)
            return
        for messages in fetched.values():
            for message in messages:
                self.batcher.add(self._decode(message))
                if self.batcher.full():
                    self._flush()

    def _undecodable(self, err: KafkaError) -> None:
        """A fetched record batch cannot be decoded: kafka-python raises it from poll() each time the stuck
        partition is fetched again, while the other partitions go on. Count it, log it with every assigned
        partition's position (the stuck one stops advancing), fail readiness, and back off."""
        assert self.consumer is not None
        self._undecodable_at = time.monotonic()
        self.metrics.undecodable.inc()
        positions = ", ".join(f"{tp.topic}/{tp.partition}@{self.consumer.position(tp)}"
                              for tp in sorted(self.assigned))
        log.error("cannot decode a fetched record batch (%s: %s); its partition cannot advance until the "
                  "cause is fixed (a codec library missing: install rankae-tagger's dependencies; a corrupt "
                  "batch: see the broker). Positions: %s", type(err).__name__, err, positions)
        self.stopping.wait(1.0)

    def _decode(self, message: Any) -> Item:
        where = (message.topic, message.partition, message.offset, message.timestamp)
        try:
            document = decode_document(message.value, self.settings.max_text_bytes)
        except BadMessage as bad:
            self._dead_letter(message, bad)
            return Item(*where, document=None, reason=bad.reason)
        self._count(bad=False)
        return Item(*where, document=document)

    def _dead_letter(self, message: Any, bad: BadMessage) -> None:
        log.warning("bad message topic=%s partition=%d offset=%d: %s", message.topic, message.partition,
                    message.offset, bad)
        assert self.producer is not None
        headers = [("reason", bad.reason.encode()), ("detail", bad.detail.encode()[:1000]),
                   ("source", f"{message.topic}/{message.partition}/{message.offset}".encode())]
        value = message.value
        if value is not None and len(value) > DLQ_VALUE_MAX:  # the producer would refuse the whole record
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:DLQ_VALUE_MAX]
        self._send_dead_letter(_DeadLetter(value, message.key, headers))
        self.metrics.messages.labels("dead_lettered").inc()
        self.metrics.bad_messages.labels(bad.reason).inc()
        self._count(bad=True, reason=bad.reason)

    def _send_dead_letter(self, letter: _DeadLetter) -> None:
        assert self.producer is not None
        sent: FutureRecordMetadata | KafkaError
        try:
            sent = self.producer.send(self.settings.dlq_topic, value=letter.value, key=letter.key,
                                      headers=letter.headers)
        except KafkaError as err:  # e.g. the DLQ topic's metadata did not arrive in time: resent at the flush
            sent = err
        self._dead_letters.append((letter, sent))

    def _flush_dead_letters(self, deadline: float | None) -> None:
        """Step 5: every dead letter acknowledged before any offset is committed; refused ones are resent."""
        delay = 0.1
        while self._dead_letters:
            assert self.producer is not None
            self.producer.flush()
            refused = [(letter, sent if isinstance(sent, KafkaError) else sent.exception)
                       for letter, sent in self._dead_letters if isinstance(sent, KafkaError) or sent.failed()]
            self._dead_letters = []
            if not refused:
                return
            err = refused[0][1]
            self.metrics.dlq_failures.inc(len(refused))
            deadline = self._retry_deadline(deadline, delay, err)
            log.error("dead-letter topic %r refused %d message(s) (%s); their offsets stay uncommitted and they are "
                      "resent in %.1f s (if the broker says too large, raise the topic's max.message.bytes)",
                      self.settings.dlq_topic, len(refused), err, delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, _KAFKA_RETRY_MAX_S)
            for letter, _ in refused:
                self._send_dead_letter(letter)

    def _count(self, bad: bool, reason: str = "") -> None:
        window = self.recent_bad
        if len(window) == window.maxlen:  # the oldest outcome leaves the window
            self.bad_in_window -= window[0]
        window.append(bad)
        self.bad_in_window += bad
        if bad and len(window) == window.maxlen and self.bad_in_window > self.settings.bad_share_limit * len(window):
            raise BadInputFlood(
                f"{self.bad_in_window} of the last {len(window)} messages on {self.settings.input_topic!r} were bad "
                f"(latest: {reason}); check the topic and the producers' message format (see the DLQ "
                f"{self.settings.dlq_topic!r}), or raise TAGGER_BAD_SHARE_LIMIT")

    def _flush(self, deadline: float | None = None) -> None:
        """Steps 3-6 for the open batch; raises _Abandoned if the write cannot finish by ``deadline``."""
        batch = self.batcher.take()
        if batch is None:
            return
        if self._next_tagger is not None:
            self._swap_model()
        self.metrics.batch_wait.observe(max(0.0, time.monotonic() - batch.opened_at))
        records = self._predict(batch)
        self._write(batch, records, deadline)
        self._flush_dead_letters(deadline)
        self._commit(batch)

    def _predict(self, batch: Batch) -> list[TagRecord]:
        assert self.tagger is not None
        good = batch.good()
        if not good:
            return []
        started = time.perf_counter()
        tags = self.tagger.predict([item.document.text for item in good if item.document], self.settings.top_k)
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(good))
        return [TagRecord(item.document.id, doc_tags, item.document.text, item.topic, item.partition,
                          item.offset, item.timestamp_ms)
                for item, doc_tags in zip(good, tags, strict=True) if item.document]

    def _retry_deadline(self, deadline: float | None, delay: float, err: Exception) -> float | None:
        """The deadline for another retry in ``delay`` s: set on SIGTERM (an outage must not hold the
        shutdown), and raising _Abandoned once the retry would come after it."""
        if deadline is None and self.stopping.is_set():
            deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if deadline is not None and time.monotonic() + delay > deadline:
            raise _Abandoned from err
        return deadline

    def _write(self, batch: Batch, records: list[TagRecord], deadline: float | None) -> None:
        if not records:
            return
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                assert self.writer is not None and self.tagger is not None
                written = self.writer.write(records, self.tagger.version)
                break
            except redis.RedisError as err:
                self.metrics.redis_errors.inc()
                deadline = self._retry_deadline(deadline, delay, err)
                log.warning("redis write failed (%s); pausing consumption, retrying in %.1f s", err, delay)
                records = self._wait_for_redis(batch, records, delay)
                delay = min(delay * 2, self.settings.redis_retry_max_s)
        self._resume()
        acked = time.time()
        self.metrics.redis_write.observe(time.perf_counter() - started)
        self.metrics.stale_writes.inc(written.count(False))
        self.metrics.messages.labels("tagged").inc(len(records))
        for record in records:
            self.metrics.end_to_end.observe(max(0.0, acked - record.timestamp_ms / 1000))

    def _wait_for_redis(self, batch: Batch, records: list[TagRecord], delay: float) -> list[TagRecord]:
        """Pause, poll for ``delay`` (keeps group membership), and drop records of revoked partitions."""
        assert self.consumer is not None
        self._in_retry = True
        try:
            self.consumer.pause(*self.consumer.assignment())
            for messages in self.consumer.poll(timeout_ms=int(delay * 1000)).values():
                for message in messages:  # from partitions assigned during the pause: next batch
                    self.batcher.add(self._decode(message))
            self.consumer.pause(*self.consumer.assignment())
        finally:
            self._in_retry = False
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        batch.items = [item for item in batch.items if (item.topic, item.partition) in owned]
        return [r for r in records if (r.topic, r.partition) in owned]

    def _resume(self) -> None:
        if self.consumer is not None and self.consumer.paused():
            self.consumer.resume(*self.consumer.paused())
            log.info("redis is back; consumption resumed")

    def _commit(self, batch: Batch) -> None:
        self._pending.update({TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
                              for (topic, partition), offset in batch.last_offsets().items()})
        self._commit_if_due()

    def _commit_if_due(self) -> None:
        """Commit what is pending unless a failed commit's backoff has not run out yet."""
        if self._pending and time.monotonic() >= self._commit_retry_at:
            self._commit_pending()

    def _commit_pending(self) -> None:
        """Commit the written offsets; keep them for a later retry while the broker is unreachable."""
        assert self.consumer is not None
        offsets = dict(self._pending)
        try:
            self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as err:
            if isinstance(err, KafkaTimeoutError) or err.retriable:
                self._commit_later(offsets, err)
                return
            # The group rebalanced under us: the partitions' new owner re-processes these records and,
            # since writes are idempotent, the result in Redis is the same.
            self.metrics.commit_failures.labels("rejected").inc()
            log.warning("commit failed (%s); records will be processed again by their new owner", err)
            self._pending.clear()
            return
        if self._commit_delay > 0.5:
            log.info("offsets committed again after the broker came back: %s", _names(offsets))
        self._pending.clear()  # nothing adds to it while commit() runs: rebalance callbacks run in poll()
        self._commit_delay, self._commit_retry_at = 0.5, 0.0
        self._update_lag(offsets)

    def _commit_later(self, offsets: dict[TopicPartition, OffsetAndMetadata], err: KafkaError) -> None:
        self.metrics.commit_failures.labels("unreachable").inc()
        log.warning("kafka broker unreachable: offsets of %s not committed (%s); they are kept, consumption goes "
                    "on, next commit attempt in %.1f s", _names(offsets), type(err).__name__, self._commit_delay)
        self._commit_retry_at = time.monotonic() + self._commit_delay
        self._commit_delay = min(self._commit_delay * 2, _KAFKA_RETRY_MAX_S)

    def _check_broker(self) -> None:
        """Once a second: warn (at growing intervals) while the group coordinator is unreachable."""
        now = time.monotonic()
        if now < self._broker_check_at or self.consumer is None:
            return
        self._broker_check_at = now + 1.0
        reachable = kafka_clients.coordinator_reachable(self.consumer)
        self.metrics.kafka_reachable.set(reachable)
        if reachable and self._unreachable_since:
            if self._next_warning_s > 1.0:  # it was warned about
                log.info("kafka broker reachable again after %.1f s", now - self._unreachable_since)
            self._unreachable_since, self._next_warning_s = 0.0, 1.0
        elif not reachable and not self._unreachable_since:
            self._unreachable_since = now
        elif not reachable and now - self._unreachable_since >= self._next_warning_s:
            log.warning("kafka broker unreachable for %.0f s (group coordinator unknown); waiting, the client "
                        "reconnects with backoff", now - self._unreachable_since)
            self._next_warning_s *= 2

    def _update_lag(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        assert self.consumer is not None
        for tp, committed in offsets.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - committed.offset))


def _names(offsets: dict[TopicPartition, OffsetAndMetadata]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}@{o.offset}" for tp, o in sorted(offsets.items()))
