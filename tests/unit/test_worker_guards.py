"""Worker pieces that need no broker: the bad-input guard and the Kafka security pass-through."""

from __future__ import annotations

import pytest

from worker.config import Secret, WorkerSettings
from worker.kafka import security_options
from worker.runner import BadInputFlood, Worker


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
