"""Kafka clients built from the settings: plain kafka-python, so any Kafka cluster works."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import NoBrokersAvailable, TopicAlreadyExistsError

from worker.settings import KafkaSettings

__all__ = ["connect_with_backoff", "consumer", "coordinator_reachable", "create_topic", "producer",
           "security_options", "undecodable_partition"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
FETCH_MAX_BYTES = 16 * 1024 * 1024
# kafka-python backs reconnects off exponentially up to 30 s by default: after a short broker outage the
# worker could then sit idle for up to 30 s more. 5 s keeps the retry rate low and the recovery quick.
RECONNECT_BACKOFF_MAX_MS = 5_000


def security_options(kafka: KafkaSettings) -> dict[str, Any]:
    """SASL/SSL options passed through to kafka-python (only those that are set)."""
    options: dict[str, Any] = {"security_protocol": kafka.kafka_security_protocol}
    optional = {
        "sasl_mechanism": kafka.kafka_sasl_mechanism,
        "sasl_plain_username": kafka.kafka_sasl_username,
        "sasl_plain_password": kafka.kafka_sasl_password.reveal() if kafka.kafka_sasl_password else "",
        "ssl_cafile": kafka.kafka_ssl_cafile,
        "ssl_certfile": kafka.kafka_ssl_certfile,
        "ssl_keyfile": kafka.kafka_ssl_keyfile,
    }
    options.update({name: value for name, value in optional.items() if value})
    return options


def consumer(kafka: KafkaSettings, max_poll_records: int) -> KafkaConsumer:
    """The input consumer: manual commits only, polls of at most ``max_poll_records`` (the batcher's limit)."""
    return KafkaConsumer(
        bootstrap_servers=kafka.kafka_bootstrap_servers.split(","),
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset=kafka.auto_offset_reset,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        # kafka-python 2.x caps a network frame at 1 MB by default, below one fetch of several 1 MB
        # partitions: such fetches fail ("Invalid frame length") and are retried, costing throughput.
        fetch_max_bytes=FETCH_MAX_BYTES,
        receive_message_max_bytes=2 * FETCH_MAX_BYTES,
        client_id=f"rankae-tagger-{kafka.group_id}",
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        **security_options(kafka),
    )


def producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer with the settings' brokers, security and codec, acknowledged by all in-sync replicas:
    the dead-letter producer, and every other (the demo's, the benchmarks', the tests'), which may
    override kafka-python options (e.g. ``acks=1``)."""
    # A dead-lettered message is copied unchanged, so the producer must take any message the consumer can
    # fetch: kafka-python's default 1 MB request limit would raise in send() on a larger poison message.
    codec = None if kafka.kafka_compression_type == "none" else kafka.kafka_compression_type
    options: dict[str, Any] = {"acks": "all", "linger_ms": 5, "max_request_size": FETCH_MAX_BYTES,
                               "compression_type": codec, "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
                               **security_options(kafka), **overrides}
    return KafkaProducer(bootstrap_servers=kafka.kafka_bootstrap_servers.split(","), **options)


def create_topic(kafka: KafkaSettings, topic: str, partitions: int) -> None:
    """Create a topic if it does not exist (used by the demo and the tests)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap_servers.split(","),
                             **security_options(kafka))
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        log.info("topic %s already exists", topic)
    finally:
        admin.close()


def connect_with_backoff(factory: Callable[[], _T], stop: threading.Event, what: str,
                         max_wait_s: float = 30.0) -> _T | None:
    """Call ``factory`` until the brokers answer, backing off up to max_wait_s; None if stopped first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return factory()
        except NoBrokersAvailable:
            log.warning("%s: no Kafka broker reachable; retrying in %.1f s", what, delay)
            stop.wait(delay)
            delay = min(delay * 2, max_wait_s)
    return None


def coordinator_reachable(consumer: KafkaConsumer) -> bool:
    """Whether the consumer's group coordinator is known and connected (False while the broker is away).

    kafka-python has no public call for this; its coordinator's own check is used, and a client without
    one (another version) is taken as reachable rather than failing the worker."""
    coordinator = getattr(consumer, "_coordinator", None)
    check = getattr(coordinator, "coordinator_unknown", None)
    return True if check is None else not check()


def undecodable_partition(consumer: KafkaConsumer) -> TopicPartition | None:
    """The partition whose fetched record batch ``poll()`` just failed to decode; None when the client cannot tell.

    kafka-python raises the error without naming the partition and keeps that partition's records first in
    line, so every later ``poll()`` raises again and the other partitions' records wait behind them: the
    caller pauses this partition so that the others flow. The client's fetcher holds the partition (the
    records in progress, or the error kept for the next poll); a client without those attributes (another
    version) gives None."""
    fetcher = getattr(consumer, "_fetcher", None)
    for holder, field in (("_next_partition_records", "topic_partition"),
                          ("_next_in_line_exception_metadata", "partition")):
        partition = getattr(getattr(fetcher, holder, None), field, None)
        if isinstance(partition, TopicPartition):
            return partition
    return None
