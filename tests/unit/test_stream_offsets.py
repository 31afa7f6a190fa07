"""Offsets: committed once written, kept and retried with backoff while the broker is away, dropped when
rejected or revoked (a fake consumer and clock; lag computed by hand)."""

from __future__ import annotations

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError, NodeNotReadyError
from kafka.structs import OffsetAndMetadata

from tests.support.clock import FakeClock
from worker.metrics import WorkerMetrics
from worker.stream.offsets import COMMIT_TIMEOUT_MS, Offsets

P0, P1 = TopicPartition("docs", 0), TopicPartition("docs", 1)


class Consumer:
    """Commits fail with ``failures`` in turn, then succeed; the high watermarks are fixed."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.attempts: list[dict[TopicPartition, int]] = []
        self.committed: dict[TopicPartition, int] = {}
        self.highwaters = {P0: 50, P1: 20}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int) -> None:
        assert timeout_ms == COMMIT_TIMEOUT_MS
        self.attempts.append({tp: o.offset for tp, o in offsets.items()})
        if self.failures:
            raise self.failures.pop(0)
        self.committed.update(self.attempts[-1])

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)


def _offsets(consumer: Consumer, clock: FakeClock | None = None) -> tuple[Offsets, WorkerMetrics]:
    metrics = WorkerMetrics()
    return Offsets(consumer, metrics, clock or FakeClock()), metrics


def _sample(metrics: WorkerMetrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_commit_is_the_last_written_offset_plus_one_and_lag_follows() -> None:
    consumer = Consumer()
    offsets, metrics = _offsets(consumer)
    offsets.store({("docs", 0): 9, ("docs", 1): 19})
    offsets.commit_if_due()
    assert consumer.committed == {P0: 10, P1: 20} and offsets.pending == {}
    assert _sample(metrics, "tagger_consumer_lag", {"topic": "docs", "partition": "0"}) == 40  # 50 - 10
    assert _sample(metrics, "tagger_consumer_lag", {"topic": "docs", "partition": "1"}) == 0


def test_nothing_pending_means_no_commit() -> None:
    consumer = Consumer()
    offsets, _ = _offsets(consumer)
    offsets.commit_if_due()
    assert consumer.attempts == []


def test_an_unreachable_broker_keeps_the_offsets_and_retries_with_backoff() -> None:
    clock = FakeClock()
    consumer = Consumer(KafkaTimeoutError(), NodeNotReadyError())
    offsets, metrics = _offsets(consumer, clock)
    offsets.store({("docs", 0): 9})
    offsets.commit_if_due()  # fails at 100.0: next try at 100.5
    clock.now = 100.4
    offsets.commit_if_due()
    assert len(consumer.attempts) == 1 and offsets.pending
    clock.now = 100.5
    offsets.store({("docs", 0): 12, ("docs", 1): 3})  # newer offsets merge with the kept ones
    offsets.commit_if_due()  # fails again: next try 1.0 s later, at 101.5
    clock.now = 101.4
    offsets.commit_if_due()
    assert len(consumer.attempts) == 2
    clock.now = 101.5
    offsets.commit_if_due()
    assert consumer.attempts == [{P0: 10}, {P0: 13, P1: 4}, {P0: 13, P1: 4}]
    assert consumer.committed == {P0: 13, P1: 4} and offsets.pending == {}
    assert _sample(metrics, "tagger_commit_failures_total", {"reason": "unreachable"}) == 2


def test_the_retry_pause_is_capped_and_reset_once_a_commit_succeeds() -> None:
    clock = FakeClock()
    consumer = Consumer(*[KafkaTimeoutError() for _ in range(6)])
    offsets, _ = _offsets(consumer, clock)
    offsets.store({("docs", 0): 1})
    pauses = []
    for _ in range(6):
        offsets.commit_if_due()
        pauses.append(offsets.retry_at - clock.now)
        clock.now = offsets.retry_at
    assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    offsets.commit_if_due()
    assert consumer.committed == {P0: 2} and (offsets.retry_delay, offsets.retry_at) == (0.5, 0.0)


def test_a_rejected_commit_is_dropped_for_the_new_owner() -> None:
    consumer = Consumer(CommitFailedError("the group rebalanced"))
    offsets, metrics = _offsets(consumer)
    offsets.store({("docs", 0): 9})
    offsets.commit_if_due()
    assert offsets.pending == {} and consumer.committed == {}
    assert _sample(metrics, "tagger_commit_failures_total", {"reason": "rejected"}) == 1
    offsets.commit_if_due()
    assert len(consumer.attempts) == 1  # not retried


def test_revoked_partitions_are_forgotten_with_their_lag() -> None:
    consumer = Consumer()
    offsets, metrics = _offsets(consumer)
    offsets.store({("docs", 0): 9})
    offsets.commit_if_due()
    offsets.store({("docs", 0): 11, ("docs", 1): 5})
    offsets.drop({P0, P1})  # P1 had no lag sample yet: no error
    assert offsets.pending == {}
    assert _sample(metrics, "tagger_consumer_lag", {"topic": "docs", "partition": "0"}) is None
