"""Worker settings: env vars, flags overriding them, validation, secrets never shown."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from model.errors import ConfigError
from worker.config import Secret, WorkerSettings, add_settings_flags, settings_from


def test_env_vars_are_typed_and_flags_win() -> None:
    env = {"TAGGER_TOP_K": "7", "TAGGER_INPUT_TOPIC": "in", "TAGGER_BAD_SHARE_LIMIT": "0.25"}
    settings = settings_from(env, {"input_topic": "from-flag", "max_wait_ms": "15", "group_id": None})
    assert settings.top_k == 7 and settings.bad_share_limit == 0.25
    assert settings.input_topic == "from-flag" and settings.max_wait_ms == 15
    assert settings.group_id == WorkerSettings().group_id


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="TAGGER_TOP_K"):
        settings_from({"TAGGER_TOP_K": "many"})
    with pytest.raises(ConfigError, match="TAGGER_MAX_BATCH_DOCS"):
        settings_from({"TAGGER_MAX_BATCH_DOCS": "0"})
    with pytest.raises(ConfigError, match="TAGGER_BAD_SHARE_LIMIT"):
        settings_from({"TAGGER_BAD_SHARE_LIMIT": "2"})
    with pytest.raises(ConfigError, match="TAGGER_KAFKA_COMPRESSION_TYPE must be one of none, gzip, snappy, lz4, zstd"):
        settings_from({"TAGGER_KAFKA_COMPRESSION_TYPE": "brotli"})


def test_secrets_are_masked_everywhere() -> None:
    settings = settings_from({"TAGGER_KAFKA_SASL_PASSWORD": "hunter2", "TAGGER_REDIS_PASSWORD": "s3cret",
                              "TAGGER_REDIS_URL": "redis://user:inline-pw@host:6379/0"})
    assert settings.kafka_sasl_password == Secret("hunter2")
    shown = repr(settings) + str(settings.redacted())
    for secret in ("hunter2", "s3cret", "inline-pw"):
        assert secret not in shown
    assert settings.redis_secret() == "s3cret"


def test_password_file_is_read_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    assert settings_from({"TAGGER_REDIS_PASSWORD_FILE": str(tmp_path / "pw")}).redis_secret() == "from-file"
    with pytest.raises(ConfigError, match="cannot read"):
        settings_from({"TAGGER_REDIS_PASSWORD_FILE": str(tmp_path / "nope")}).redis_secret()


def test_every_setting_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    args = parser.parse_args(["--kafka-bootstrap-servers", "k:9092", "--top-k", "3"])
    settings = settings_from({}, vars(args))
    assert settings.kafka_bootstrap_servers == "k:9092" and settings.top_k == 3


_SECURE = {"TAGGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TAGGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "TAGGER_KAFKA_SASL_USERNAME": "tagger", "TAGGER_KAFKA_SASL_PASSWORD": "kafka-pw",
           "TAGGER_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem", "TAGGER_KAFKA_SSL_CERTFILE": "/etc/kafka/client.pem",
           "TAGGER_KAFKA_SSL_KEYFILE": "/etc/kafka/client.key"}


def test_every_kafka_security_setting_is_covered() -> None:
    """A new kafka_sasl_*/kafka_ssl_* setting without a pass-through (and a line above) fails here."""
    from worker.config import _fields

    security = {"TAGGER_" + name.upper() for name in _fields()
                if name.startswith(("kafka_security", "kafka_sasl", "kafka_ssl"))}
    assert security == set(_SECURE)


def test_kafka_security_settings_reach_the_consumer_the_dlq_producer_and_the_admin_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import kafka

    built: dict[str, dict[str, object]] = {}

    def recorder(name: str) -> object:
        def build(*args: object, **kwargs: object) -> object:
            built[name] = kwargs
            return _Stub()
        return build

    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka, name, recorder(name))
    settings = settings_from(_SECURE)
    kafka.consumer(settings)
    kafka.producer(settings)
    kafka.create_topic(settings, "docs", 1)
    expected = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "tagger",
                "sasl_plain_password": "kafka-pw", "ssl_cafile": "/etc/kafka/ca.pem",
                "ssl_certfile": "/etc/kafka/client.pem", "ssl_keyfile": "/etc/kafka/client.key"}
    assert set(built) == {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
    for name, kwargs in built.items():
        assert {key: kwargs.get(key) for key in expected} == expected, name
    assert "kafka-pw" not in repr(settings)


class _Stub:
    def create_topics(self, *args: object, **kwargs: object) -> None:
        """Nothing to create."""

    def close(self) -> None:
        """Nothing to close."""


def test_redis_tls_ca_without_a_tls_url_is_an_error(tmp_path: Path) -> None:
    from worker.store import connect

    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(ConfigError, match="not a rediss://"):
        connect(settings_from({"TAGGER_REDIS_SSL_CA_CERTS": str(tmp_path / "ca.pem")}))
    with pytest.raises(ConfigError, match="TAGGER_REDIS_SSL_CA_CERTS: no such file"):
        connect(settings_from({"TAGGER_REDIS_URL": "rediss://localhost:6379/0",
                               "TAGGER_REDIS_SSL_CA_CERTS": str(tmp_path / "missing.pem")}))


def test_torch_threads_setting_caps_torch_and_zero_leaves_the_default() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        WorkerSettings(torch_threads=0).apply_torch_threads()
        assert torch.get_num_threads() == before
        settings_from({"TAGGER_TORCH_THREADS": "1"}, {}).apply_torch_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="TAGGER_TORCH_THREADS"):
        WorkerSettings(torch_threads=-1)
