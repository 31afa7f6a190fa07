"""Settings: env vars, flags overriding them, per-field bounds, groups per command, secrets never shown."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from model.errors import ConfigError
from worker.settings import (
    GROUPS,
    KafkaSettings,
    OpsSettings,
    RedisSettings,
    Secret,
    Settings,
    StreamSettings,
    add_flags,
    field_names,
    load,
)


def test_env_vars_are_typed_and_flags_win() -> None:
    env = {"TAGGER_TOP_K": "7", "TAGGER_INPUT_TOPIC": "in", "TAGGER_BAD_SHARE_LIMIT": "0.25"}
    settings = load(env, {"input_topic": "from-flag", "max_wait_ms": "15", "group_id": None})
    assert settings.model.top_k == 7 and settings.stream.bad_share_limit == 0.25
    assert settings.kafka.input_topic == "from-flag" and settings.stream.max_wait_ms == 15
    assert settings.kafka.group_id == KafkaSettings().group_id


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="TAGGER_TOP_K"):
        load({"TAGGER_TOP_K": "many"})
    with pytest.raises(ConfigError, match="TAGGER_MAX_BATCH_DOCS"):
        load({"TAGGER_MAX_BATCH_DOCS": "0"})
    with pytest.raises(ConfigError, match="TAGGER_BAD_SHARE_LIMIT"):
        load({"TAGGER_BAD_SHARE_LIMIT": "2"})
    with pytest.raises(ConfigError, match="TAGGER_KAFKA_COMPRESSION_TYPE must be one of none, gzip, snappy, lz4, zstd"):
        load({"TAGGER_KAFKA_COMPRESSION_TYPE": "brotli"})


def test_secrets_are_masked_everywhere() -> None:
    settings = load({"TAGGER_KAFKA_SASL_PASSWORD": "hunter2", "TAGGER_REDIS_PASSWORD": "s3cret",
                              "TAGGER_REDIS_URL": "redis://user:inline-pw@host:6379/0"})
    assert settings.kafka.kafka_sasl_password == Secret("hunter2")
    shown = repr(settings) + str(settings.redis.shown()) + str(settings.kafka.shown())
    for secret in ("hunter2", "s3cret", "inline-pw"):
        assert secret not in shown
    assert settings.redis.secret() == "s3cret"


def test_password_file_is_read_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    assert load({"TAGGER_REDIS_PASSWORD_FILE": str(tmp_path / "pw")}).redis.secret() == "from-file"
    with pytest.raises(ConfigError, match="cannot read"):
        load({"TAGGER_REDIS_PASSWORD_FILE": str(tmp_path / "nope")}).redis.secret()


def test_every_setting_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, *GROUPS.values())
    args = parser.parse_args(["--kafka-bootstrap-servers", "k:9092", "--top-k", "3"])
    settings = load({}, vars(args))
    assert settings.kafka.kafka_bootstrap_servers == "k:9092" and settings.model.top_k == 3


_SECURE = {"TAGGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TAGGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "TAGGER_KAFKA_SASL_USERNAME": "tagger", "TAGGER_KAFKA_SASL_PASSWORD": "kafka-pw",
           "TAGGER_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem", "TAGGER_KAFKA_SSL_CERTFILE": "/etc/kafka/client.pem",
           "TAGGER_KAFKA_SSL_KEYFILE": "/etc/kafka/client.key"}


def test_every_kafka_security_setting_is_covered() -> None:
    """A new kafka_sasl_*/kafka_ssl_* setting without a pass-through (and a line above) fails here."""
    security = {"TAGGER_" + name.upper() for name in field_names()
                if name.startswith(("kafka_security", "kafka_sasl", "kafka_ssl"))}
    assert security == set(_SECURE)


def test_kafka_security_settings_reach_the_consumer_the_dlq_producer_and_the_admin_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.stream import kafka

    built: dict[str, dict[str, object]] = {}

    def recorder(name: str) -> object:
        def build(*args: object, **kwargs: object) -> object:
            built[name] = kwargs
            return _Stub()
        return build

    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka, name, recorder(name))
    settings = load(_SECURE)
    kafka.consumer(settings.kafka, 256)
    kafka.producer(settings.kafka)
    kafka.create_topic(settings.kafka, "docs", 1)
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
    from worker.store.connection import connect

    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(ConfigError, match="not a rediss://"):
        connect(load({"TAGGER_REDIS_SSL_CA_CERTS": str(tmp_path / "ca.pem")}).redis)
    with pytest.raises(ConfigError, match="TAGGER_REDIS_SSL_CA_CERTS: no such file"):
        connect(RedisSettings(redis_url="rediss://localhost:6379/0", redis_ssl_ca_certs=str(tmp_path / "missing.pem")))


def test_torch_threads_setting_caps_torch_and_zero_leaves_the_default() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        OpsSettings(torch_threads=0).apply_torch_threads()
        assert torch.get_num_threads() == before
        load({"TAGGER_TORCH_THREADS": "1"}, {}).ops.apply_torch_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="TAGGER_TORCH_THREADS"):
        OpsSettings(torch_threads=-1)


def test_every_field_states_its_bounds_in_the_error() -> None:
    """Bounds are declared per field: the error names the variable, the bound and the value."""
    with pytest.raises(ConfigError, match="TAGGER_MAX_WAIT_MS must be at least 0, got -1"):
        StreamSettings(max_wait_ms=-1)
    with pytest.raises(ConfigError, match=r"TAGGER_BAD_SHARE_LIMIT must be above 0\.0, got 0\.0"):
        load({"TAGGER_BAD_SHARE_LIMIT": "0"})
    with pytest.raises(ConfigError, match=r"TAGGER_CORRECTIONS_SLICE must be below 1\.0, got 1\.0"):
        load({"TAGGER_CORRECTIONS_SLICE": "1"})
    with pytest.raises(ConfigError, match="TAGGER_AUTO_OFFSET_RESET must be one of earliest, latest, got 'oldest'"):
        load({"TAGGER_AUTO_OFFSET_RESET": "oldest"})
    with pytest.raises(ConfigError, match="TAGGER_METRICS_PORT must be at most 65535, got 70000"):
        OpsSettings(metrics_port=70000)


def test_settings_of_takes_flat_names_and_refuses_unknown_ones() -> None:
    settings = Settings.of(redis_url="redis://r:1/2", top_k=3, finetune_epochs=4)
    assert (settings.redis.redis_url, settings.model.top_k, settings.learner.finetune_epochs) == ("redis://r:1/2", 3, 4)
    assert settings.flat()["top_k"] == 3 and len(settings.flat()) == len(field_names())
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.of(topk=3)


def test_field_names_are_unique_across_groups() -> None:
    """Each env var maps to one field of one group."""
    assert len(field_names()) == len(set(field_names()))


def test_each_command_shows_only_its_groups() -> None:
    from worker.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    def flags(command: str) -> set[str]:
        return {o for a in commands[command]._actions for o in a.option_strings if o.startswith("--")}
    assert {"--input-topic", "--max-batch-docs", "--redis-url", "--metrics-port"} <= flags("serve")
    assert not {"--finetune-epochs", "--tag-cut"} & flags("serve")
    assert {"--redis-url", "--model-dir", "--tag-cut"} <= flags("correct")
    assert not {"--max-batch-tokens", "--finetune-epochs", "--input-topic"} & flags("correct")
    assert {"--redis-url", "--redis-password-file"} <= flags("lookup") and "--top-k" not in flags("lookup")
    assert {"--finetune-epochs", "--promote-epsilon", "--model-dir"} <= flags("learn")
    assert "--input-topic" not in flags("learn")


@pytest.mark.parametrize("raw, value", [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False),
                                        ("false", False), ("No", False), ("", False)])
def test_a_switch_reads_the_usual_spellings(raw: str, value: bool) -> None:
    assert load({"TAGGER_REDIS_CLUSTER": raw}).redis.redis_cluster is value


def test_a_switch_refuses_anything_else_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="TAGGER_REDIS_CLUSTER: expected bool for redis_cluster, got 'maybe'"):
        load({"TAGGER_REDIS_CLUSTER": "maybe"})
    assert load({}, {"redis_cluster": "1"}).redis.redis_cluster is True
