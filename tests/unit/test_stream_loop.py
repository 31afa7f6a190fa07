"""The loop's order over fake clients: Redis write, then dead letters, then the commit; a rebalance flushes
first; a shutdown is bounded; a new model is swapped in between batches. No broker, no sleeps."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from kafka import TopicPartition
from kafka.errors import UnsupportedCodecError
from kafka.future import Future

from worker.metrics import WorkerMetrics
from worker.settings import KafkaSettings, Settings, StreamSettings
from worker.store.writer import TagRecord
from worker.stream.clients import Clients
from worker.stream.loop import Worker
from worker.stream.watcher import ModelWatcher

TP0 = TopicPartition("docs", 0)
Events = list[Any]


class Stopping(threading.Event):
    """The stop event; a wait on it returns at once (the loop's pause after an undecodable batch)."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


class Consumer:
    """Each poll plays the next step of ``script`` (records, an exception, or a callback); after the last,
    a poll sets ``stopping``, as SIGTERM would."""

    def __init__(self, events: Events, stopping: threading.Event, script: list[Any]) -> None:
        self.events, self.stopping, self.script = events, stopping, script
        self.listener: Any = None
        self.paused_set: set[TopicPartition] = set()

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener
        listener.on_partitions_assigned([TP0])

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if not self.script:
            self.stopping.set()
            return {}
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            step(self)
            return {}
        return {TP0: step} if step else {}  # kafka-python leaves out partitions with nothing fetched

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int) -> None:
        self.events.append(("commit", {tp.partition: o.offset for tp, o in offsets.items()}))

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def position(self, tp: TopicPartition) -> int:
        return 0

    def assignment(self) -> set[TopicPartition]:
        return {TP0}

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_set |= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_set -= set(partitions)
        self.events.append("resume")

    def close(self, autocommit: bool, timeout_ms: int) -> None:
        self.events.append("close")


class Writer:
    def __init__(self, events: Events, failures: int = 0) -> None:
        self.events, self.failures = events, failures

    def write(self, records: list[TagRecord], version: str) -> list[bool]:
        self.events.append(("write", [r.doc_id for r in records], version))
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("Connection refused")
        return [True] * len(records)


class Producer:
    def __init__(self, events: Events) -> None:
        self.events = events

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]) -> Future:
        self.events.append(("dead-letter", value))
        return Future().success(None)

    def flush(self) -> None:
        self.events.append("dlq-flush")

    def close(self, timeout: float) -> None:
        self.events.append("producer-close")


class Tagger:
    device = "cpu"

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        return [[("tag", 1.0)] for _ in texts]


def record(offset: int, value: bytes | None = None) -> SimpleNamespace:
    value = value or json.dumps({"id": f"d{offset}", "text": "oil prices"}).encode()
    return SimpleNamespace(topic="docs", partition=0, offset=offset, timestamp=0, key=None, value=value)


def run(script: list[Any], failures: int = 0, before: Callable[[Worker], None] = lambda _: None,
        **stream: Any) -> tuple[Events, Worker]:
    """Run a worker over fake clients until ``script`` is played; the events in the order they happened."""
    events: Events = []
    stopping = Stopping()
    metrics = WorkerMetrics()
    clients = Clients(ModelWatcher(Tagger("v1"), metrics), Writer(events, failures), Producer(events),
                      Consumer(events, stopping, script))
    settings = Settings(kafka=KafkaSettings(input_topic="docs", dlq_topic="docs.dlq"),
                        stream=StreamSettings(**{"max_wait_ms": 60_000, "idle_wait_ms": 60_000, **stream}))
    worker = Worker(settings, clients, metrics, stopping)
    before(worker)
    worker.run()
    return events, worker


def test_dead_letters_and_the_redis_write_are_acknowledged_before_the_commit() -> None:
    events, _ = run([[record(0), record(1, b"{nope"), record(2)]])
    assert events == [("dead-letter", b"{nope"), ("write", ["d0", "d2"], "v1"), "dlq-flush", ("commit", {0: 3}),
                      "close", "producer-close"]


def test_an_idle_poll_flushes_a_small_batch_without_waiting_for_its_deadline() -> None:
    events, _ = run([[record(0)], [], [record(1)], [record(2)], []], idle_wait_ms=2)
    assert [e for e in events if e[0] in ("write", "commit")] == [
        ("write", ["d0"], "v1"), ("commit", {0: 1}), ("write", ["d1", "d2"], "v1"), ("commit", {0: 3})]


def test_a_full_batch_is_flushed_at_once_and_the_rest_waits_for_the_next() -> None:
    events, _ = run([[record(0), record(1), record(2)]], max_batch_docs=2)
    assert [e for e in events if e[0] in ("write", "commit")] == [
        ("write", ["d0", "d1"], "v1"), ("commit", {0: 2}), ("write", ["d2"], "v1"), ("commit", {0: 3})]


def test_while_redis_is_away_consumption_pauses_and_nothing_is_committed() -> None:
    events, worker = run([[record(0)]], failures=2)
    assert events[:5] == [("write", ["d0"], "v1")] * 3 + ["resume", ("commit", {0: 1})]
    assert worker.metrics.registry.get_sample_value("tagger_redis_errors_total") == 2


def test_a_rebalance_flushes_and_commits_the_open_batch_before_letting_go() -> None:
    def revoke(consumer: Consumer) -> None:
        consumer.events.append("revoking")
        consumer.listener.on_partitions_revoked([TP0])
        consumer.events.append("revoked")

    events, worker = run([[record(0)], revoke])
    assert events[:4] == ["revoking", ("write", ["d0"], "v1"), ("commit", {0: 1}), "revoked"]
    assert not worker.ready() and worker.metrics.assigned._value.get() == 0


def test_a_rebalance_while_redis_is_away_leaves_the_batch_to_the_new_owner(caplog: pytest.LogCaptureFixture) -> None:
    def revoke(consumer: Consumer) -> None:
        consumer.listener.on_partitions_revoked([TP0])

    with caplog.at_level(logging.WARNING, logger="worker.stream.loop"):
        events, worker = run([[record(0)], revoke], failures=1)
    assert not any(e[0] == "commit" for e in events) and worker.offsets.pending == {}
    assert "rebalance: batch not written" in caplog.text


def test_a_shutdown_while_redis_is_away_is_bounded_and_commits_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.stream.loop"):
        events, _ = run([[record(0)]], failures=10**6, shutdown_timeout_s=0.0)
    assert events == [("write", ["d0"], "v1"), "close", "producer-close"]
    assert "the last batch could not be written in time" in caplog.text


def test_an_undecodable_batch_fails_readiness_and_the_loop_goes_on() -> None:
    events, worker = run([UnsupportedCodecError("lz4 codec not found"), [record(0)]])
    assert ("commit", {0: 1}) in events
    assert worker.metrics.undecodable._value.get() == 1
    assert worker.assigned == {TP0} and not worker.ready()


def test_a_new_model_is_swapped_in_at_the_next_batch() -> None:
    def load(worker: Worker) -> None:
        worker.models.incoming = Tagger("v2")

    events, worker = run([[record(0)]], before=load)
    assert ("write", ["d0"], "v2") in events and worker.models.served.version == "v2"



def run_with(tagger: Tagger, writer: Writer, script: list[Any], **stream: Any) -> Worker:
    """As :func:`run`, with the given tagger and writer (whose events are the ones to look at)."""
    def install(worker: Worker) -> None:
        worker.models.served = tagger
        worker.tagging.writer = writer
    return run(script, before=install, **stream)[1]


def test_the_next_batch_is_tagged_while_the_previous_one_is_written() -> None:
    second_started = threading.Event()
    overlapped: list[bool] = []

    class MarkingTagger(Tagger):
        def predict(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
            if texts[0] == "second":
                second_started.set()
            return super().predict(texts, k)

    class WaitingWriter(Writer):
        def write(self, records: list[TagRecord], version: str) -> list[bool]:
            if records[0].doc_id == "d0":  # the second batch must be on the prediction thread by now
                overlapped.append(second_started.wait(timeout=10))
            return super().write(records, version)

    events: Events = []
    second = record(1, json.dumps({"id": "d1", "text": "second"}).encode())
    run_with(MarkingTagger("v1"), WaitingWriter(events), [[record(0), second]], max_batch_docs=1)
    assert overlapped == [True]
    assert [e for e in events if e[0] in ("write", "commit")] == [("write", ["d0"], "v1"), ("write", ["d1"], "v1")]


def test_a_failed_write_at_a_rebalance_drops_the_open_batch_too_and_commits_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    batches: list[int] = []

    class GatedTagger(Tagger):
        def predict(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
            batches.append(len(texts))
            assert gate.wait(timeout=10)
            return super().predict(texts, k)

    def revoke(consumer: Consumer) -> None:
        gate.set()  # the first batch gets its tags; its write fails and a rebalance allows no retry
        consumer.listener.on_partitions_revoked([TP0])

    events: Events = []
    with caplog.at_level(logging.WARNING, logger="worker.stream.loop"):
        worker = run_with(GatedTagger("v1"), Writer(events, failures=10**6),
                          [[record(0), record(1), record(2)], revoke], max_batch_docs=2)
    assert events == [("write", ["d0", "d1"], "v1")]  # d2's batch was launched, then dropped: never written
    assert batches[0] == 2 and worker.offsets.pending == {} and not worker.predictor.busy()
    assert "rebalance: batch not written" in caplog.text


def test_the_partition_of_an_undecodable_batch_is_paused_for_good_so_the_others_flow() -> None:
    def point_at_tp0(worker: Worker) -> None:  # kafka-python's fetcher holds the stuck partition's records
        worker.consumer._fetcher = SimpleNamespace(_next_partition_records=SimpleNamespace(topic_partition=TP0))

    events, worker = run([UnsupportedCodecError("zstd codec not found"), [record(0)]], failures=1,
                         before=point_at_tp0)
    assert worker.stuck == {TP0} and worker.consumer.paused() == {TP0}  # the Redis recovery left it paused
    assert "resume" not in events and not worker.ready()
    assert worker.metrics.undecodable._value.get() == 1
