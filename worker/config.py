"""The worker's settings: one frozen, typed object, built once at start from env vars and flags.

Every field ``name`` is read from the environment variable ``TAGGER_<NAME>`` and from the flag
``--<name-with-dashes>``; a flag wins over the environment, which wins over the default. Secrets are
:class:`Secret` values whose ``repr`` never shows the value, so settings can be logged whole.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from model.errors import ConfigError

__all__ = ["Secret", "WorkerSettings", "add_settings_flags", "settings_from"]

ENV_PREFIX = "TAGGER_"


class Secret:
    """A string that never appears in logs, reprs or tracebacks."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for handing to a client library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Kafka's record-batch codecs; kafka-python reads and writes all of them with the extras this project
# depends on (kafka-python[lz4,snappy,zstd]), whoever produced the batch.
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True, repr=False)
class WorkerSettings:
    """Everything ``tagger serve`` needs; see the README for the env var of each field."""

    # Kafka
    kafka_bootstrap_servers: str = "localhost:9092"  # comma-separated host:port list
    input_topic: str = "documents"  # JSON documents {"id", "text", "title"?}
    group_id: str = "rankae-tagger"  # consumer group; scale out by adding workers up to the partition count
    dlq_topic: str = "documents.dlq"  # bad messages go here, with a "reason" header
    auto_offset_reset: str = "earliest"  # where a new group starts
    session_timeout_ms: int = 10_000  # a vanished worker's partitions move after this long
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 10  # how long the broker may hold a fetch waiting for data: bounds idle latency
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 ...
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret | None = None
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_compression_type: str = "none"  # the dead-letter producer's codec: none, gzip, snappy, lz4 or zstd
    # Redis
    redis_url: str = "redis://localhost:6379/0"  # rediss:// for TLS
    redis_password: Secret | None = None  # overrides a password in the URL
    redis_password_file: str = ""  # read the password from this file (e.g. a mounted secret)
    redis_ssl_ca_certs: str = ""  # CA bundle to verify the Redis server's certificate
    tags_ttl_s: int = 0  # expiry of tagger:tags:{id}; 0 keeps them
    doc_ttl_s: int = 7 * 24 * 3600  # expiry of tagger:doc:{id}, the text kept for retraining
    # Model and batching
    model_dir: str = "model"  # checkpoint directory
    device: str = ""  # torch device; empty = CUDA when present, else CPU
    top_k: int = 5  # tags written per document
    max_batch_docs: int = 256  # a batch closes at this many documents ...
    max_batch_tokens: int = 65_536  # ... or this many whitespace-separated tokens ...
    max_wait_ms: int = 20  # ... or this long after its first document arrived, whichever is first
    max_text_bytes: int = 200_000  # longer documents are dead-lettered
    # Corrections and fine-tuning (tagger correct / tagger learn)
    tag_cut: float = 0.5  # a stored tag scoring at least this counts as assigned when corrected
    corrections_per_user_per_minute: int = 30  # per-user rate limit on submitted corrections
    finetune_every: int = 50  # a fine-tune round starts after this many new corrected documents ...
    finetune_interval_s: float = 300.0  # ... or this long after the last round, if there are any
    finetune_min_examples: int = 10  # no round on fewer corrected documents than this
    finetune_epochs: int = 3
    finetune_lr: float = 5e-4
    finetune_loss: str = ""  # "margin" or "bce"; empty: the live model's own loss
    replay_ratio: float = 2.0  # original training documents replayed per corrected document
    corrections_slice: float = 0.2  # share of corrected documents held out to judge a candidate
    promote_epsilon: float = 0.01  # largest allowed drop of held-out P@1 and nDCG@5 (absolute)
    keep_versions: int = 5  # model versions kept in the registry
    # Operations
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108  # /metrics, /healthz, /readyz; 0 picks a free port
    bad_share_limit: float = 0.5  # stop if more than this share of the recent window is bad input
    bad_window: int = 200  # messages in that window
    redis_retry_max_s: float = 5.0  # longest pause between Redis retries (exponential backoff)
    shutdown_timeout_s: float = 10.0  # bound on finishing the last batch after SIGTERM
    torch_threads: int = 0  # torch's CPU threads in this process; 0 = torch's default (one per core)

    def __post_init__(self) -> None:
        for name in ("top_k", "max_batch_docs", "max_batch_tokens", "max_text_bytes", "bad_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.metrics_port < 0 or self.torch_threads < 0:
            raise ConfigError("TAGGER_MAX_WAIT_MS, TAGGER_METRICS_PORT and TAGGER_TORCH_THREADS must not be negative")
        if not 0.0 < self.corrections_slice < 1.0:
            raise ConfigError(f"TAGGER_CORRECTIONS_SLICE must be in (0, 1), got {self.corrections_slice}")
        if not 0.0 < self.bad_share_limit <= 1.0:
            raise ConfigError(f"TAGGER_BAD_SHARE_LIMIT must be in (0, 1], got {self.bad_share_limit}")
        if self.kafka_compression_type not in COMPRESSION_TYPES:
            raise ConfigError(f"TAGGER_KAFKA_COMPRESSION_TYPE must be one of {', '.join(COMPRESSION_TYPES)}, "
                              f"got {self.kafka_compression_type!r}")

    def apply_torch_threads(self) -> None:
        """Cap torch's CPU threads (``torch_threads``), e.g. for a learner sharing a node with workers."""
        if self.torch_threads:
            import torch  # here, not at the top: the settings are read by processes without a model too

            torch.set_num_threads(self.torch_threads)

    def redacted(self) -> dict[str, object]:
        """The settings as a dict fit for logs: secrets masked, a password inside the Redis URL removed."""
        shown: dict[str, object] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["redis_url"] = re.sub(r"//[^@/]*@", "//***@", self.redis_url)
        return shown

    def __repr__(self) -> str:
        return f"WorkerSettings({self.redacted()})"

    def redis_secret(self) -> str | None:
        """The Redis password from the file or the setting, if any."""
        if self.redis_password_file:
            try:
                return Path(self.redis_password_file).read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ConfigError(f"TAGGER_REDIS_PASSWORD_FILE: cannot read {self.redis_password_file} "
                                  f"({err.strerror})") from err
        return self.redis_password.reveal() if self.redis_password else None


def _fields() -> dict[str, Any]:
    hints = get_type_hints(WorkerSettings)
    return {f.name: hints[f.name] for f in dataclasses.fields(WorkerSettings)}


def _convert(name: str, kind: Any, raw: Any, source: str) -> Any:
    if raw is None or isinstance(raw, Secret):
        return raw
    try:
        if kind is bool:
            return str(raw).lower() in ("1", "true", "yes", "on")
        if kind in (int, float):
            return kind(raw)
        if kind == (Secret | None):
            return Secret(str(raw)) if raw != "" else None
        return str(raw)
    except ValueError as err:
        raise ConfigError(f"{source}: expected {kind.__name__} for {name}, got {raw!r}") from err


def settings_from(env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> WorkerSettings:
    """Build settings from ``TAGGER_*`` env vars, overridden by flags whose value is not None."""
    values: dict[str, Any] = {}
    for name, kind in _fields().items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = _convert(name, kind, env[env_name], env_name)
        flag = (flags or {}).get(name)
        if flag is not None:
            values[name] = _convert(name, kind, flag, "--" + name.replace("_", "-"))
    return WorkerSettings(**values)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting (default None, so the env var or the built-in default applies)."""
    group = parser.add_argument_group("worker settings (each also read from TAGGER_<NAME>)")
    defaults = WorkerSettings()
    for name in _fields():
        default = getattr(defaults, name)
        shown = "unset" if default is None or isinstance(default, Secret) else repr(default)
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar="V",
                           help=f"env {ENV_PREFIX}{name.upper()} (default {shown})")
