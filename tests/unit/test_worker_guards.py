"""Worker pieces that need no broker: the bad-input guard, the Kafka security pass-through and the DLQ's
handling of refused dead letters."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from worker.config import Secret, WorkerSettings
from worker.kafka import security_options
from worker.messages import BadMessage
from worker.runner import DLQ_VALUE_MAX, BadInputFlood, Worker, _Abandoned


def test_a_flood_of_bad_input_stops_the_worker_with_a_clear_error() -> None:
    worker = Worker(WorkerSettings(bad_window=10, bad_share_limit=0.5, input_topic="docs"))
    for _ in range(5):
        worker._count(bad=False)
    for _ in range(5):
        worker._count(bad=True, reason="invalid_json")  # 5 of 10: at the limit, not over it
    with pytest.raises(BadInputFlood, match=r"6 of the last 10 messages on 'docs' were bad \(latest: invalid_json\)"):
        worker._count(bad=True, reason="invalid_json")


def test_occasional_bad_input_is_tolerated() -> None:
    worker = Worker(WorkerSettings(bad_window=10, bad_share_limit=0.3))
    for i in range(100):
        worker._count(bad=i % 5 == 0, reason="bad_id")  # 20% bad


def test_kafka_security_settings_pass_through() -> None:
    settings = WorkerSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                              kafka_sasl_username="tagger", kafka_sasl_password=Secret("pw"),
                              kafka_ssl_cafile="/etc/ca.pem")
    assert security_options(settings) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "tagger",
        "sasl_plain_password": "pw", "ssl_cafile": "/etc/ca.pem"}
    assert security_options(WorkerSettings()) == {"security_protocol": "PLAINTEXT"}


class _DlqProducer:
    """Stands in for the DLQ's KafkaProducer: refuses each letter ``refusals`` times, then acknowledges it."""

    def __init__(self, refusals: int, raise_in_send: bool = False) -> None:
        self.refusals, self.raise_in_send = refusals, raise_in_send
        self.sent: list[tuple[bytes | None, list[tuple[str, bytes]]]] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]) -> Future:
        self.sent.append((value, headers))
        if sum(v == value for v, _ in self.sent) > self.refusals:
            return Future().success(None)
        if self.raise_in_send:
            raise KafkaTimeoutError("metadata for the DLQ topic not available")
        return Future().failure(MessageSizeTooLargeError("larger than the topic's max.message.bytes"))

    def flush(self) -> None:
        """The futures are already resolved."""


def _message(value: bytes) -> SimpleNamespace:
    return SimpleNamespace(topic="docs", partition=0, offset=7, key=b"k", value=value)


@pytest.mark.parametrize("raise_in_send", [False, True])
def test_a_refused_dead_letter_is_resent_before_the_flush_returns(raise_in_send: bool) -> None:
    worker = Worker(WorkerSettings(dlq_topic="docs.dlq"))
    worker.producer = _DlqProducer(refusals=2, raise_in_send=raise_in_send)
    worker._dead_letter(_message(b"{"), BadMessage("invalid_json", "line 1"))
    worker._flush_dead_letters(deadline=None)
    assert [value for value, _ in worker.producer.sent] == [b"{"] * 3  # refused twice, then acknowledged
    assert worker.metrics.dlq_failures._value.get() == 2
    assert worker._dead_letters == []


def test_a_dead_letter_refused_until_the_deadline_leaves_the_batch_uncommitted() -> None:
    worker = Worker(WorkerSettings(dlq_topic="docs.dlq"))
    worker.producer = _DlqProducer(refusals=10**6)
    worker._dead_letter(_message(b"{"), BadMessage("invalid_json", "line 1"))
    with pytest.raises(_Abandoned):
        worker._flush_dead_letters(deadline=time.monotonic() + 0.5)


def test_a_message_too_large_for_the_producer_is_dead_lettered_cut_with_its_size() -> None:
    worker = Worker(WorkerSettings(dlq_topic="docs.dlq"))
    worker.producer = _DlqProducer(refusals=0)
    huge = b"x" * (DLQ_VALUE_MAX + 10)
    worker._dead_letter(_message(huge), BadMessage("too_large", "text over the limit"))
    ((value, headers),) = worker.producer.sent
    assert value == huge[:DLQ_VALUE_MAX]
    assert dict(headers)["truncated_from"] == str(len(huge)).encode() and dict(headers)["reason"] == b"too_large"
