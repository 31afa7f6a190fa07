"""Broker warnings at growing intervals, and undecodable batches failing readiness for a while (fake clock)."""

from __future__ import annotations

import logging

import pytest
from kafka import TopicPartition
from kafka.errors import UnsupportedCodecError

from tests.support.clock import FakeClock
from worker.metrics import WorkerMetrics
from worker.stream.health import UNDECODABLE_UNREADY_S, KafkaHealth


class Broker:
    def __init__(self) -> None:
        self.up, self.asked = True, 0

    def reachable(self) -> bool:
        self.asked += 1
        return self.up


def _health() -> tuple[KafkaHealth, Broker, FakeClock, WorkerMetrics]:
    broker, clock, metrics = Broker(), FakeClock(), WorkerMetrics()
    return KafkaHealth(metrics, broker.reachable, clock), broker, clock, metrics


def test_the_broker_is_asked_at_most_once_a_second() -> None:
    health, broker, clock, _ = _health()
    for now in (100.0, 100.5, 100.99, 101.0, 101.2, 102.0):
        clock.now = now
        health.check()
    assert broker.asked == 3  # at 100, 101 and 102


def test_an_unreachable_broker_is_warned_about_at_growing_intervals(caplog: pytest.LogCaptureFixture) -> None:
    health, broker, clock, metrics = _health()
    broker.up = False
    with caplog.at_level(logging.INFO, logger="worker.stream.health"):
        for second in range(0, 9):  # down from 100 to 108: warnings 1, 2, 4 and 8 s in
            clock.now = 100.0 + second
            health.check()
        assert metrics.kafka_reachable._value.get() == 0
        broker.up = True
        clock.now = 109.0
        health.check()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [f"kafka broker unreachable for {s} s (group coordinator unknown); waiting, the client "
                        "reconnects with backoff" for s in (1, 2, 4, 8)] + ["kafka broker reachable again after 9.0 s"]
    assert metrics.kafka_reachable._value.get() == 1


def test_a_blip_shorter_than_a_second_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    health, broker, clock, _ = _health()
    with caplog.at_level(logging.INFO, logger="worker.stream.health"):
        broker.up = False
        health.check()
        broker.up, clock.now = True, 101.0
        health.check()
        broker.up, clock.now = False, 102.0  # a new outage: it counts from here, not from 100
        health.check()
        clock.now = 103.0
        health.check()
    assert [record.getMessage()[:34] for record in caplog.records] == ["kafka broker unreachable for 1 s ("]


def test_an_undecodable_batch_is_counted_logged_and_fails_readiness_for_a_while(
        caplog: pytest.LogCaptureFixture) -> None:
    health, _, clock, metrics = _health()
    assert health.decoding()
    with caplog.at_level(logging.ERROR, logger="worker.stream.health"):
        health.undecodable(UnsupportedCodecError("libraries for lz4 compression codec not found"),
                           {TopicPartition("docs", 0): 5, TopicPartition("docs", 1): None})
    assert metrics.undecodable._value.get() == 1
    assert "UnsupportedCodecError" in caplog.text and "Positions: docs/0@5, docs/1@None" in caplog.text
    clock.now = 100.0 + UNDECODABLE_UNREADY_S
    assert not health.decoding()
    clock.now += 0.001
    assert health.decoding()
