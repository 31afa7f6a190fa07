"""Step 2: a good record becomes an item with its document; a bad one an item with its reason, sent to the
dead-letter topic and counted by the guard."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from kafka.future import Future

from worker.metrics import WorkerMetrics
from worker.stream.batcher import Item
from worker.stream.dead_letters import DeadLetters
from worker.stream.guard import BadInputFlood, BadInputGuard
from worker.stream.intake import Intake
from worker.stream.messages import Document


class Producer:
    def __init__(self) -> None:
        self.sent: list[bytes | None] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]) -> Future:
        self.sent.append(value)
        return Future().success(None)


def _record(value: bytes, offset: int = 3) -> SimpleNamespace:
    return SimpleNamespace(topic="docs", partition=1, offset=offset, timestamp=1_700_000_000_000, key=None,
                           value=value)


def _intake(window: int = 10) -> tuple[Intake, Producer, BadInputGuard]:
    producer, guard = Producer(), BadInputGuard(window, 0.5, "docs", "docs.dlq")
    letters = DeadLetters(producer, "docs.dlq", WorkerMetrics(), threading.Event(), 10.0)
    return Intake(1_000, letters, guard), producer, guard


def test_a_good_record_becomes_an_item_with_its_document() -> None:
    intake, producer, guard = _intake()
    item = intake.item(_record(b'{"id": "a", "text": "oil prices"}'))
    assert item == Item("docs", 1, 3, 1_700_000_000_000, Document("a", "oil prices"))
    assert producer.sent == [] and list(guard.recent) == [False]


def test_a_bad_record_is_dead_lettered_and_still_an_item() -> None:
    intake, producer, guard = _intake()
    item = intake.item(_record(b"{nope"))
    assert item == Item("docs", 1, 3, 1_700_000_000_000, None, "invalid_json")
    assert producer.sent == [b"{nope"] and list(guard.recent) == [True]


def test_a_flood_of_bad_records_stops_the_intake() -> None:
    intake, _, _ = _intake(window=2)
    intake.item(_record(b"{nope", offset=1))
    with pytest.raises(BadInputFlood, match="2 of the last 2"):
        intake.item(_record(b"{nope", offset=2))
