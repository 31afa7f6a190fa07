"""Steps 3 and 4: one model call per batch, one Redis write per batch, retried while Redis is away."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import redis

from model.errors import StoreError
from worker.metrics import WorkerMetrics
from worker.store.writer import TagRecord
from worker.stream.batcher import Batch, Item
from worker.stream.deadline import Abandoned, Deadline
from worker.stream.messages import Document
from worker.stream.tagging import Tagging


class Tagger:
    version = "v1"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def predict(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        self.calls.append((texts, k))
        return [[(f"tag-{text}", 0.5)] for text in texts]


class Writer:
    """Fails ``failures`` times, then reports ``stored`` for each record (False: a newer result was kept)."""

    def __init__(self, failures: int = 0, stale: int = 0) -> None:
        self.failures, self.stale = failures, stale
        self.writes: list[list[str]] = []

    def write(self, records: list[TagRecord], version: str) -> list[bool]:
        self.writes.append([r.doc_id for r in records])
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("Connection refused")
        return [i >= self.stale for i in range(len(records))]


def _item(offset: int, partition: int = 0, bad: bool = False) -> Item:
    document = None if bad else Document(f"d{offset}", f"text{offset}")
    return Item("docs", partition, offset, 1_000, document, "invalid_json" if bad else "")


def _record(offset: int, partition: int = 0) -> TagRecord:
    return TagRecord(f"d{offset}", [(f"tag-text{offset}", 0.5)], f"text{offset}", "docs", partition, offset, 1_000)


def _tagging(writer: Writer) -> tuple[Tagging, WorkerMetrics]:
    metrics = WorkerMetrics()
    return Tagging(writer, 3, metrics, threading.Event(), retry_max_s=0.5, shutdown_timeout_s=10.0), metrics


def test_the_model_runs_once_over_the_good_documents() -> None:
    tagger = Tagger()
    tagging, metrics = _tagging(Writer())
    batch = Batch(0.0, [_item(0), _item(1, bad=True), _item(5, partition=1)])
    assert tagging.predict(tagger, batch) == [_record(0), _record(5, partition=1)]
    assert tagger.calls == [(["text0", "text5"], 3)]
    assert metrics.registry.get_sample_value("tagger_batch_size_sum") == 2


def test_a_batch_of_bad_messages_needs_no_model_call() -> None:
    tagger = Tagger()
    tagging, _ = _tagging(Writer())
    assert tagging.predict(tagger, Batch(0.0, [_item(0, bad=True)])) == [] and tagger.calls == []


def test_a_write_counts_what_was_tagged_and_what_was_stale() -> None:
    writer = Writer(stale=1)
    tagging, metrics = _tagging(writer)
    tagging.write([_record(0), _record(1)], "v1", Deadline.unbounded(), lambda delay: pytest.fail("no wait"))
    assert writer.writes == [["d0", "d1"]]
    assert metrics.registry.get_sample_value("tagger_messages_total", {"outcome": "tagged"}) == 2
    assert metrics.registry.get_sample_value("tagger_stale_writes_total") == 1
    assert metrics.registry.get_sample_value("tagger_end_to_end_latency_seconds_count") == 2


def test_nothing_to_write_is_no_round_trip() -> None:
    writer = Writer()
    tagging, _ = _tagging(writer)
    tagging.write([], "v1", Deadline.unbounded(), lambda delay: pytest.fail("no wait"))
    assert writer.writes == []


def test_a_failed_write_waits_with_backoff_and_drops_revoked_partitions() -> None:
    writer, waits = Writer(failures=3), []
    tagging, metrics = _tagging(writer)

    def wait(delay: float) -> set[tuple[str, int]]:
        waits.append(delay)
        return {("docs", 0)} if len(waits) >= 2 else {("docs", 0), ("docs", 1)}  # partition 1 revoked

    tagging.write([_record(0), _record(5, partition=1)], "v1", Deadline.unbounded(), wait)
    assert waits == [0.1, 0.2, 0.4]
    assert writer.writes == [["d0", "d5"], ["d0", "d5"], ["d0"], ["d0"]]
    assert metrics.registry.get_sample_value("tagger_redis_errors_total") == 3
    assert metrics.registry.get_sample_value("tagger_messages_total", {"outcome": "tagged"}) == 1


def test_a_write_that_cannot_finish_by_the_deadline_is_abandoned() -> None:
    writer = Writer(failures=1)
    tagging, metrics = _tagging(writer)
    with pytest.raises(Abandoned):
        tagging.write([_record(0)], "v1", Deadline.from_timeout(0), lambda delay: pytest.fail("no wait"))
    assert metrics.registry.get_sample_value("tagger_messages_total", {"outcome": "tagged"}) == 0


def test_the_write_names_the_model_version() -> None:
    seen = []
    writer = SimpleNamespace(write=lambda records, version: seen.append(version) or [True])
    tagging, _ = _tagging(writer)
    tagging.write([_record(0)], "v7", Deadline.unbounded(), lambda delay: set())
    assert seen == ["v7"]


@pytest.mark.parametrize("error, says", [
    (redis.ResponseError("CROSSSLOT Keys in request don't hash to the same slot"), "across slots"),
    (redis.exceptions.MovedError("3999 127.0.0.1:6381"), "set TAGGER_REDIS_CLUSTER=1"),
    (redis.AuthenticationError("invalid username-password pair"), "check TAGGER_REDIS_PASSWORD"),
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), "will not help"),
])
def test_an_error_no_retry_can_fix_stops_the_worker_at_once(error: redis.RedisError, says: str) -> None:
    writes: list[int] = []

    def write(records: list[TagRecord], version: str) -> list[bool]:
        writes.append(len(records))
        raise error

    tagging, metrics = _tagging(SimpleNamespace(write=write))
    with pytest.raises(StoreError, match=says):
        tagging.write([_record(0)], "v1", Deadline.unbounded(), lambda delay: pytest.fail("no retry"))
    assert writes == [1] and metrics.registry.get_sample_value("tagger_redis_errors_total") == 0
