"""Settings: frozen, typed groups, built once at start from env vars and flags.

Every field ``name`` of every group is read from the environment variable ``TAGGER_<NAME>`` and from the
flag ``--<name-with-dashes>``; a flag wins over the environment, which wins over the default. A command
declares the groups it uses (``add_flags(parser, KafkaSettings, ...)``), so its ``--help`` shows only
those; ``load`` builds every group, the others from the environment alone. Each field states its own
bounds, checked when its group is built. Secrets are :class:`Secret` values whose ``repr`` never shows
the value, so settings can be logged whole.

    Settings ─┬─ kafka        KafkaSettings       brokers, topics, group, security, DLQ codec
              ├─ redis        RedisSettings       URL, password, TLS, key expiry
              ├─ model        ModelSettings       checkpoint or registry, device, tags per document
              ├─ stream       StreamSettings      batching, bad-input guard, retries, shutdown
              ├─ corrections  CorrectionSettings  what a correction means, per-user rate limit
              ├─ learner      LearnerSettings     fine-tuning rounds and the promotion guard
              ├─ ops          OpsSettings         metrics endpoint, torch threads
              └─ api          ApiSettings         HTTP API and review page: address, write token, limits, CORS
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from model.errors import ConfigError

__all__ = ["ENV_PREFIX", "GROUPS", "ApiSettings", "CorrectionSettings", "KafkaSettings", "LearnerSettings",
           "ModelSettings", "OpsSettings", "RedisSettings", "Secret", "Settings", "StreamSettings", "add_flags",
           "field_names", "load"]

ENV_PREFIX = "TAGGER_"
# Kafka's record-batch codecs; kafka-python reads and writes all of them with the extras this project
# depends on (kafka-python[lz4,snappy,zstd]), whoever produced the batch.
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


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


def setting(default: Any, *, low: float | None = None, high: float | None = None, above: float | None = None,
            below: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A field with its bounds: ``low``/``high`` inclusive, ``above``/``below`` exclusive, or ``choices``."""
    bounds = {"low": low, "high": high, "above": above, "below": below, "choices": choices}
    return field(default=default, metadata={k: v for k, v in bounds.items() if v not in (None, ())})


class _Group:
    """What every settings group shares: bounds checked at construction, env/flag loading, a safe repr."""

    title: ClassVar[str]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_bounds(f, getattr(self, f.name))

    @classmethod
    def from_sources(cls, env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Any:
        """This group from ``TAGGER_*`` env vars, overridden by flags whose value is not None."""
        values: dict[str, Any] = {}
        for name, kind in _field_types(cls).items():
            env_name = ENV_PREFIX + name.upper()
            if env_name in env:
                values[name] = _convert(name, kind, env[env_name], env_name)
            flag = (flags or {}).get(name)
            if flag is not None:
                values[name] = _convert(name, kind, flag, "--" + name.replace("_", "-"))
        return cls(**values)

    def shown(self) -> dict[str, object]:
        """The fields as a dict fit for logs (secrets print as ``Secret('***')``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown()})"


def _check_bounds(f: dataclasses.Field[Any], value: Any) -> None:
    name, rules = ENV_PREFIX + f.name.upper(), f.metadata
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(f"{name} must be one of {', '.join(rules['choices'])}, got {value!r}")
    checks = (("low", lambda b: value >= b, "at least"), ("high", lambda b: value <= b, "at most"),
              ("above", lambda b: value > b, "above"), ("below", lambda b: value < b, "below"))
    for key, holds, words in checks:
        if key in rules and not holds(rules[key]):
            raise ConfigError(f"{name} must be {words} {rules[key]}, got {value}")


@dataclass(frozen=True, repr=False)
class KafkaSettings(_Group):
    """Where documents come from and bad ones go."""

    title: ClassVar[str] = "Kafka"
    kafka_bootstrap_servers: str = "localhost:9092"  # comma-separated host:port list
    input_topic: str = "documents"  # JSON documents {"id", "text", "title"?}
    group_id: str = "rankae-tagger"  # consumer group; scale out by adding workers up to the partition count
    dlq_topic: str = "documents.dlq"  # bad messages go here, with a "reason" header
    auto_offset_reset: str = setting("earliest", choices=("earliest", "latest"))  # where a new group starts
    session_timeout_ms: int = setting(10_000, low=1)  # a vanished worker's partitions move after this long
    heartbeat_interval_ms: int = setting(3_000, low=1)
    fetch_max_wait_ms: int = setting(10, low=0)  # how long the broker may hold a fetch: bounds idle latency
    kafka_security_protocol: str = setting("PLAINTEXT", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    kafka_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 ...
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret | None = None
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_compression_type: str = setting("none", choices=COMPRESSION_TYPES)  # the dead-letter producer's codec


@dataclass(frozen=True, repr=False)
class RedisSettings(_Group):
    """Where tags are written and corrections kept."""

    title: ClassVar[str] = "Redis"
    redis_url: str = "redis://localhost:6379/0"  # rediss:// for TLS
    redis_password: Secret | None = None  # overrides a password in the URL
    redis_password_file: str = ""  # read the password from this file (e.g. a mounted secret)
    redis_ssl_ca_certs: str = ""  # CA bundle to verify the Redis server's certificate
    redis_cluster: bool = False  # the URL names one node of a Redis Cluster; the client discovers the rest
    tags_ttl_s: int = setting(0, low=0)  # expiry of tagger:{id}:tags; 0 keeps them
    doc_ttl_s: int = setting(7 * 24 * 3600, low=0)  # expiry of tagger:{id}:doc, the text kept for retraining

    def shown(self) -> dict[str, object]:
        """The fields for logs, with a password inside the URL removed."""
        return {**super().shown(), "redis_url": re.sub(r"//[^@/]*@", "//***@", self.redis_url)}

    def secret(self) -> str | None:
        """The Redis password from the file or the setting, if any."""
        if self.redis_password_file:
            try:
                return Path(self.redis_password_file).read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ConfigError(f"TAGGER_REDIS_PASSWORD_FILE: cannot read {self.redis_password_file} "
                                  f"({err.strerror})") from err
        return self.redis_password.reveal() if self.redis_password else None


@dataclass(frozen=True, repr=False)
class ModelSettings(_Group):
    """Which model tags, where it runs, and how many tags it writes."""

    title: ClassVar[str] = "model"
    model_dir: str = "model"  # checkpoint directory, or a registry of versions
    device: str = ""  # torch device; empty = CUDA when present, else CPU
    top_k: int = setting(5, low=1)  # tags written per document


@dataclass(frozen=True, repr=False)
class StreamSettings(_Group):
    """How the worker batches, guards against bad input, retries and stops."""

    title: ClassVar[str] = "stream"
    max_batch_docs: int = setting(256, low=1)  # a batch closes at this many documents ...
    max_batch_tokens: int = setting(65_536, low=1)  # ... or this many whitespace-separated tokens ...
    max_wait_ms: int = setting(20, low=0)  # ... or this long after its first document arrived ...
    idle_wait_ms: int = setting(2, low=0)  # ... or when a poll that waited this long brought nothing
    max_text_bytes: int = setting(200_000, low=1)  # longer documents are dead-lettered
    bad_share_limit: float = setting(0.5, above=0.0, high=1.0)  # stop if more than this share of the window is bad
    bad_window: int = setting(200, low=1)  # messages in that window
    redis_retry_max_s: float = setting(5.0, above=0.0)  # longest pause between Redis retries (exponential)
    shutdown_timeout_s: float = setting(10.0, low=0.0)  # bound on finishing the last batch after SIGTERM


@dataclass(frozen=True, repr=False)
class CorrectionSettings(_Group):
    """What a correction means, how many one user may submit, and when a label new to the model is admitted."""

    title: ClassVar[str] = "corrections"
    tag_cut: float = setting(0.5, low=0.0, high=1.0)  # a stored tag scoring at least this counts as assigned
    corrections_per_user_per_minute: int = setting(30, low=1)  # per-user rate limit on submitted corrections
    label_min_users: int = setting(3, low=0)  # distinct users whose corrections admit a new label; 0: refused
    label_ttl_s: int = setting(30 * 24 * 3600, low=1)  # a new label nobody added for this long is forgotten


@dataclass(frozen=True, repr=False)
class LearnerSettings(_Group):
    """When ``tagger learn`` fine-tunes, on what, and when it promotes the result."""

    title: ClassVar[str] = "learner"
    round_mode: str = setting("retrain", choices=("retrain", "finetune"))  # how a round makes its candidate
    finetune_every: int = setting(50, low=1)  # a round starts after this many new corrected documents ...
    finetune_interval_s: float = setting(300.0, above=0.0)  # ... or this long after the last round, if any
    finetune_min_examples: int = setting(10, low=1)  # no round on fewer corrected documents than this
    finetune_epochs: int = setting(3, low=1)  # finetune rounds only
    finetune_lr: float = setting(5e-4, above=0.0)  # finetune rounds only
    finetune_loss: str = setting("", choices=("", "margin", "bce"))  # empty: the live model's own loss
    replay_ratio: float = setting(2.0, low=0.0)  # finetune rounds: training documents replayed per correction
    corrections_slice: float = setting(0.2, above=0.0, below=1.0)  # share held out to judge a candidate
    judge_recent: int = setting(30, low=0)  # judge on the slice's corrections since the live model, at least the
    # newest this many; 0: on the whole slice
    promote_epsilon: float = setting(0.01, low=0.0)  # corrections slice: largest drop, and least summed gain
    heldout_tolerance: float = setting(0.05, low=0.0)  # held-out set: largest drop of P@1 or nDCG@5 (a collapse)
    new_label_cost: float = setting(0.005, low=0.0)  # held-out P@1 new labels' served boost may cost; 0: none
    round_budget_s: float = setting(40.0, low=0.0)  # retrain rounds: seconds of training epochs; 0: no limit
    keep_versions: int = setting(5, low=1)  # model versions kept in the registry


@dataclass(frozen=True, repr=False)
class OpsSettings(_Group):
    """The process's HTTP endpoint and CPU share."""

    title: ClassVar[str] = "operations"
    metrics_host: str = "0.0.0.0"
    metrics_port: int = setting(9108, low=0, high=65535)  # /metrics, /healthz, /readyz; 0 picks a free port
    torch_threads: int = setting(0, low=0)  # torch's CPU threads in this process; 0 = one per core
    processes: int = setting(1, low=1, high=256)  # serve: worker processes in the group, behind one endpoint

    def apply_torch_threads(self) -> None:
        """Cap torch's CPU threads (``torch_threads``), e.g. for a learner sharing a node with workers."""
        if self.torch_threads:
            import torch  # here, not at the top: the settings are read by processes without a model too

            torch.set_num_threads(self.torch_threads)


@dataclass(frozen=True, repr=False)
class ApiSettings(_Group):
    """``tagger api``: where it listens, who may write, and how large a request may be."""

    title: ClassVar[str] = "API"
    api_host: str = "0.0.0.0"
    api_port: int = setting(8080, low=0, high=65535)  # /v1/*, the review page, /metrics, /healthz, /readyz
    api_token: Secret | None = None  # bearer token for writes (corrections); none and no file: writes refused
    api_token_file: str = ""  # read the token from this file instead (e.g. a mounted secret)
    api_max_body_bytes: int = setting(1_048_576, low=1)  # larger request bodies are refused (413)
    api_max_suggest_texts: int = setting(64, low=1)  # texts per POST /v1/suggest
    api_max_lookup_ids: int = setting(1000, low=1)  # ids per POST /v1/tags:lookup
    api_cors_origins: str = ""  # comma-separated origins allowed cross-origin requests; empty: CORS off

    def token(self) -> str | None:
        """The write token from the file or the setting; None when neither is set."""
        if self.api_token_file:
            try:
                token = Path(self.api_token_file).read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ConfigError(f"TAGGER_API_TOKEN_FILE: cannot read {self.api_token_file} ({err.strerror})") from err
            if not token:
                raise ConfigError(f"TAGGER_API_TOKEN_FILE: {self.api_token_file} is empty; put the token in it")
            return token
        return self.api_token.reveal() if self.api_token else None

    def cors_origins(self) -> list[str]:
        """The origins of ``api_cors_origins`` (empty: CORS off)."""
        return [origin.strip() for origin in self.api_cors_origins.split(",") if origin.strip()]


GROUPS: dict[str, type[_Group]] = {"kafka": KafkaSettings, "redis": RedisSettings, "model": ModelSettings,
                                   "stream": StreamSettings, "corrections": CorrectionSettings,
                                   "learner": LearnerSettings, "ops": OpsSettings, "api": ApiSettings}


@dataclass(frozen=True, repr=False)
class Settings:
    """Every group; a process takes the groups it needs from here."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    corrections: CorrectionSettings = field(default_factory=CorrectionSettings)
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @classmethod
    def of(cls, **fields: Any) -> Settings:
        """Every group from keyword fields by their flat names (``Settings.of(redis_url=..., top_k=3)``),
        the rest defaults: for code that builds settings itself rather than reading the environment."""
        unknown = sorted(set(fields) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return load({}, fields)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name, across the groups (secrets stay :class:`Secret`)."""
        return {f.name: getattr(group, f.name) for group in (getattr(self, name) for name in GROUPS)
                for f in dataclasses.fields(group)}

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in GROUPS) + ")"


def load(env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Settings:
    """Every group from ``TAGGER_*`` env vars, overridden by flags whose value is not None."""
    return Settings(**{name: group.from_sources(env, flags) for name, group in GROUPS.items()})


def field_names() -> list[str]:
    """Every setting's name across the groups (the env var is ``TAGGER_`` + its upper case)."""
    return [name for group in GROUPS.values() for name in _field_types(group)]


def _field_types(group: type[_Group]) -> dict[str, Any]:
    hints = get_type_hints(group)
    return {f.name: hints[f.name] for f in dataclasses.fields(group)}  # type: ignore[arg-type]


def _convert(name: str, kind: Any, raw: Any, source: str) -> Any:
    if raw is None or isinstance(raw, Secret):
        return raw
    try:
        if kind is bool:
            return _boolean(raw)
        if kind in (int, float):
            return kind(raw)
        if kind == (Secret | None):
            return Secret(str(raw)) if raw != "" else None
        return str(raw)
    except ValueError as err:
        raise ConfigError(f"{source}: expected {kind.__name__} for {name}, got {raw!r}") from err


def _boolean(raw: Any) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); anything else is a ValueError."""
    word = str(raw).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(word)


def add_flags(parser: argparse.ArgumentParser, *groups: type[_Group]) -> None:
    """One ``--flag`` per setting of each group (default None, so the env var or the built-in default applies)."""
    for group in groups:
        section = parser.add_argument_group(f"{group.title} settings (each also read from TAGGER_<NAME>)")
        defaults = group()
        for name in _field_types(group):
            default = getattr(defaults, name)
            shown = "unset" if default is None or isinstance(default, Secret) else repr(default)
            section.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar="V",
                                 help=f"env {ENV_PREFIX}{name.upper()} (default {shown})")
