"""Worker pieces that need no broker: the bad-input guard, the Kafka security pass-through and the dead
letters (headers, a cut for messages too large for the producer, refused letters resent before a commit)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from tests.support.clock import FakeClock
from worker.metrics import WorkerMetrics
from worker.settings import KafkaSettings, Secret
from worker.stream.dead_letters import DLQ_VALUE_MAX, DeadLetters
from worker.stream.deadline import Abandoned, Deadline
from worker.stream.guard import BadInputFlood, BadInputGuard
from worker.stream.kafka import security_options
from worker.stream.messages import BadMessage


def test_a_flood_of_bad_input_stops_the_worker_with_a_clear_error() -> None:
    guard = BadInputGuard(window=10, share_limit=0.5, topic="docs", dlq_topic="docs.dlq")
    for _ in range(5):
        guard.count(bad=False)
    for _ in range(5):
        guard.count(bad=True, reason="invalid_json")  # 5 of 10: at the limit, not over it
    with pytest.raises(BadInputFlood, match=r"6 of the last 10 messages on 'docs' were bad \(latest: invalid_json\)"):
        guard.count(bad=True, reason="invalid_json")


def test_occasional_bad_input_is_tolerated() -> None:
    guard = BadInputGuard(window=10, share_limit=0.3, topic="docs", dlq_topic="docs.dlq")
    for i in range(100):
        guard.count(bad=i % 5 == 0, reason="bad_id")  # 20% bad
    assert guard.bad == 2  # offsets 90 and 95 in the last ten


def test_the_window_slides_so_old_bad_input_is_forgotten() -> None:
    guard = BadInputGuard(window=4, share_limit=0.5, topic="docs", dlq_topic="docs.dlq")
    for bad in (True, True, False, False, False, False):  # the two bad ones have left the window
        guard.count(bad=bad)
    guard.count(bad=True)
    guard.count(bad=True)  # 2 of 4: at the limit
    with pytest.raises(BadInputFlood, match="3 of the last 4"):
        guard.count(bad=True)


def test_kafka_security_settings_pass_through() -> None:
    settings = KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                             kafka_sasl_username="tagger", kafka_sasl_password=Secret("pw"),
                             kafka_ssl_cafile="/etc/ca.pem")
    assert security_options(settings) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "tagger",
        "sasl_plain_password": "pw", "ssl_cafile": "/etc/ca.pem"}
    assert security_options(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}


class _DlqProducer:
    """Stands in for the DLQ's KafkaProducer: refuses each letter ``refusals`` times, then acknowledges it."""

    def __init__(self, refusals: int, raise_in_send: bool = False) -> None:
        self.refusals, self.raise_in_send = refusals, raise_in_send
        self.sent: list[tuple[bytes | None, list[tuple[str, bytes]]]] = []
        self.flushes = 0

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]) -> Future:
        self.sent.append((value, headers))
        if sum(v == value for v, _ in self.sent) > self.refusals:
            return Future().success(None)
        if self.raise_in_send:
            raise KafkaTimeoutError("metadata for the DLQ topic not available")
        return Future().failure(MessageSizeTooLargeError("larger than the topic's max.message.bytes"))

    def flush(self) -> None:
        """The futures are already resolved."""
        self.flushes += 1


class _Stopping(threading.Event):
    """The worker's stop event; waiting on it advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.waits = clock, []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.clock.now += timeout or 0.0
        return self.is_set()


def _message(value: bytes | None, offset: int = 7) -> SimpleNamespace:
    return SimpleNamespace(topic="docs", partition=0, offset=offset, key=b"k", value=value)


def _dead_letters(producer: _DlqProducer, clock: FakeClock) -> tuple[DeadLetters, WorkerMetrics]:
    metrics = WorkerMetrics()
    return DeadLetters(producer, "docs.dlq", metrics, _Stopping(clock), shutdown_timeout_s=10.0), metrics


def test_a_dead_letter_carries_its_reason_detail_and_source() -> None:
    producer = _DlqProducer(refusals=0)
    letters, metrics = _dead_letters(producer, FakeClock())
    letters.send(_message(b"{", offset=42), BadMessage("invalid_json", "Expecting value at position 1"))
    ((value, headers),) = producer.sent
    assert value == b"{"
    assert headers == [("reason", b"invalid_json"), ("detail", b"Expecting value at position 1"),
                       ("source", b"docs/0/42")]
    assert metrics.registry.get_sample_value("tagger_messages_total", {"outcome": "dead_lettered"}) == 1
    assert metrics.registry.get_sample_value("tagger_bad_messages_total", {"reason": "invalid_json"}) == 1


@pytest.mark.parametrize("raise_in_send", [False, True])
def test_a_refused_dead_letter_is_resent_before_the_flush_returns(raise_in_send: bool) -> None:
    producer, clock = _DlqProducer(refusals=2, raise_in_send=raise_in_send), FakeClock()
    letters, metrics = _dead_letters(producer, clock)
    letters.send(_message(b"{"), BadMessage("invalid_json", "line 1"))
    letters.flush(Deadline.unbounded(clock))
    assert [value for value, _ in producer.sent] == [b"{"] * 3  # refused twice, then acknowledged
    assert metrics.dlq_failures._value.get() == 2
    assert letters.stopping.waits == [0.1, 0.2]
    assert letters.unacknowledged == []


def test_a_dead_letter_refused_until_the_deadline_leaves_the_batch_uncommitted() -> None:
    producer, clock = _DlqProducer(refusals=10**6), FakeClock()
    letters, _ = _dead_letters(producer, clock)
    letters.send(_message(b"{"), BadMessage("invalid_json", "line 1"))
    with pytest.raises(Abandoned):  # retries at +0.1 and +0.3 fit in 0.5 s; the next, at +0.7, would not
        letters.flush(Deadline.from_timeout(0.5, clock))
    assert len(producer.sent) == 3 and abs(clock.now - 100.3) < 1e-9


def test_a_stop_bounds_an_unbounded_dead_letter_flush_by_the_shutdown_timeout() -> None:
    producer, clock = _DlqProducer(refusals=10**6), FakeClock()
    letters, _ = _dead_letters(producer, clock)
    letters.stopping.set()
    letters.send(_message(b"{"), BadMessage("invalid_json", "line 1"))
    with pytest.raises(Abandoned):  # 0.1 + 0.2 + ... + 3.2 = 6.3 s, then 5 s more would pass the 10 s
        letters.flush(Deadline.unbounded(clock))
    assert abs(clock.now - 106.3) < 1e-9


def test_a_message_too_large_for_the_producer_is_dead_lettered_cut_with_its_size() -> None:
    producer = _DlqProducer(refusals=0)
    letters, _ = _dead_letters(producer, FakeClock())
    huge = b"x" * (DLQ_VALUE_MAX + 10)
    letters.send(_message(huge), BadMessage("too_large", "text over the limit"))
    ((value, headers),) = producer.sent
    assert value == huge[:DLQ_VALUE_MAX]
    assert dict(headers)["truncated_from"] == str(len(huge)).encode() and dict(headers)["reason"] == b"too_large"


def test_a_tombstone_is_dead_lettered_without_a_value() -> None:
    producer = _DlqProducer(refusals=0)
    letters, _ = _dead_letters(producer, FakeClock())
    letters.send(_message(None), BadMessage("empty", "message has no value"))
    ((value, headers),) = producer.sent
    assert value is None and "truncated_from" not in dict(headers)
