"""The stream and soak benchmarks run against the Kafka cluster TAGGER_KAFKA_BOOTSTRAP_SERVERS names."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.stream import ExternalBroker, broker_for


def test_a_named_broker_is_used_and_nothing_is_started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    with broker_for("drain", tmp_path) as broker:
        assert broker == ExternalBroker("kafka-1:9092,kafka-2:9092")
        assert broker.address == "kafka-1:9092,kafka-2:9092"  # what the workers and producers are given
    assert list(tmp_path.iterdir()) == []  # no embedded broker's folder
