"""The fault-injection rig: a paced document feed, worker subprocesses, a private Redis, and honest counts.

Shared by the short fault tests (``tests/integration/test_faults.py``) and the full-size benchmark
(``benchmarks/faults.py``); the scenarios themselves are in :mod:`benchmarks.rig.scenarios`.

How each number of a :class:`FaultResult` is counted, without trusting the worker under test:

- **produced**: documents the broker acknowledged (the feed's send callbacks), each with a unique id.
- **tagged**: produced ids whose ``tagger:tags:{id}`` key is in Redis at the end.
- **writes**: tag writes Redis executed, from its own ``INFO commandstats`` (one ``EVALSHA`` of the
  write script per document). Before Redis is killed, writes are paused (``CLIENT PAUSE WRITE``) and the
  count so far is banked, so a restart that resets the statistics loses none.
- **reprocessed** = writes − tagged: documents written more than once (at-least-once delivery). When the
  broker drops connections, the feed's producer may also resend a message whose acknowledgement was lost:
  ``checks["duplicate_messages"]`` (messages in the topic − produced) says how many such copies there were.
- **lost** = produced − tagged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition

from benchmarks.rig.process import ServeProcess
from benchmarks.rig.proxy import TcpProxy
from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.errors import TaggerError
from model.synthetic import generate_corpus
from model.trainer import train
from worker.services import Service, free_port, start_redis, start_tansu
from worker.settings import KafkaSettings
from worker.store.keys import tags_key
from worker.stream import kafka as kafka_clients
from worker.stream.kafka import create_topic

__all__ = ["FAST_GROUP", "FaultResult", "Feed", "Rig", "ScenarioError", "proxied_broker", "small_model", "tagged_ids",
           "wait_for"]

log = logging.getLogger(__name__)
PARTITIONS = 4
# Fast group membership, so a killed worker's partitions move in seconds (measured.md: ~3 s to join).
FAST_GROUP = {"TAGGER_SESSION_TIMEOUT_MS": "6000", "TAGGER_HEARTBEAT_INTERVAL_MS": "1000"}


class ScenarioError(TaggerError):
    """A fault scenario could not reach a state it waits for."""


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``condition`` until truthy; returns the seconds it took, raises ScenarioError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise ScenarioError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)  # polling a condition under a deadline, not a synchronising sleep
    return time.monotonic() - started


def tagged_ids(client: redis.Redis, ids: list[str], chunk: int = 5000) -> set[str]:
    """Those ids whose tags are in Redis (pipelined EXISTS, ``chunk`` per round trip)."""
    found: set[str] = set()
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        pipe = client.pipeline(transaction=False)
        for doc_id in part:
            pipe.exists(tags_key(doc_id))
        found |= {doc_id for doc_id, hit in zip(part, pipe.execute(), strict=True) if hit}
    return found


def small_model(out: Path, seed: int = 0) -> Path:
    """A small model trained in seconds on a generated 10-label corpus (seeds give different versions)."""
    corpus = generate_corpus(800, 10, seed=11)
    trained = train(corpus, ModelConfig(embed_dim=32, latent_dim=16, label_hidden=32, pooling="sum", dropout=0.1),
                    TrainConfig(epochs=6, lr=0.01, min_df=1, seed=seed))
    checkpoint.save(trained, out)
    return out


@contextmanager
def proxied_broker(workdir: Path) -> Iterator[TcpProxy]:
    """A private tansu broker that clients reach only through the returned (restored) proxy."""
    proxy_port = free_port()
    tansu = start_tansu(workdir / "tansu-proxied", advertised_port=proxy_port)
    proxy = TcpProxy(tansu.port, proxy_port)
    try:
        yield proxy
    finally:
        proxy.cut()
        tansu.stop()


@dataclass
class FaultResult:
    """One scenario's outcome: the table row of docs/reliability.md plus the evidence behind it."""

    fault: str
    injected: str
    produced: int
    tagged: int
    reprocessed: int
    lost: int
    recovery_s: list[float]  # one per injected fault: fault over → documents tagged again
    seconds: float  # the scenario's wall time
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class Feed:
    """Produces documents with unique ids at ``rate`` per second (unpaced when 0) from a thread."""

    def __init__(self, broker: str, topic: str, n: int, rate: float, run: str) -> None:
        texts = generate_corpus(2000, 10, seed=3).texts or []
        self.texts = {f"{run}-{i}": texts[i % len(texts)] for i in range(n)}
        self.broker, self.topic, self.rate = broker, topic, rate
        self.acked: list[str] = []
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> Feed:
        """Start producing; returns self."""
        self._thread.start()
        return self

    def join(self, timeout: float = 600) -> None:
        """Wait until every document was sent and acknowledged (or failed)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ScenarioError(f"the feed did not finish within {timeout:.0f} s")

    def _run(self) -> None:
        # Reconnecting within 1 s: the feed's own recovery after an outage should not hide the worker's.
        producer = kafka_clients.producer(KafkaSettings(kafka_bootstrap_servers=self.broker),
                                          reconnect_backoff_max_ms=1000)
        started = time.monotonic()
        for i, (doc_id, text) in enumerate(self.texts.items()):
            if self.rate and (pause := started + i / self.rate - time.monotonic()) > 0:
                time.sleep(pause)  # pacing the load generator
            future = producer.send(self.topic, json.dumps({"id": doc_id, "text": text}).encode())
            future.add_callback(lambda _meta, d=doc_id: self._done(self.acked, d))
            future.add_errback(lambda _err, d=doc_id: self._done(self.failed, d))
        producer.flush()
        producer.close()

    def _done(self, into: list[str], doc_id: str) -> None:
        with self._lock:
            into.append(doc_id)


class Rig:
    """One scenario's world: a topic on ``broker``, a private append-only Redis, workers on ``model``."""

    def __init__(self, broker: str, model: Path, workdir: Path, **worker_env: str) -> None:
        self.broker, self.model, self.workdir = broker, model, workdir
        self.name = uuid.uuid4().hex[:8]
        self.topic, self.group = f"faults-{self.name}", f"faults-{self.name}"
        create_topic(KafkaSettings(kafka_bootstrap_servers=broker), self.topic, PARTITIONS)
        create_topic(KafkaSettings(kafka_bootstrap_servers=broker), f"{self.topic}.dlq", 1)
        self.redis: Service = start_redis(workdir / f"redis-{self.name}", appendonly=True)
        self.client = redis.Redis.from_url(self.redis_url, socket_timeout=10)
        self.worker_env = worker_env
        self.workers: list[ServeProcess] = []
        self.banked_writes = 0

    @property
    def redis_url(self) -> str:
        """The private Redis's URL."""
        return f"redis://{self.redis.address}/0"

    def feed(self, n: int, rate: float) -> Feed:
        """A started feed of ``n`` documents onto the rig's topic."""
        return Feed(self.broker, self.topic, n, rate, self.name).start()

    def start_worker(self, **env: str) -> ServeProcess:
        """``tagger serve`` on the rig's topic and Redis (not waited for)."""
        settings = {**FAST_GROUP, "TAGGER_KAFKA_BOOTSTRAP_SERVERS": self.broker, "TAGGER_INPUT_TOPIC": self.topic,
                    "TAGGER_DLQ_TOPIC": f"{self.topic}.dlq", "TAGGER_GROUP_ID": self.group,
                    "TAGGER_REDIS_URL": self.redis_url, "TAGGER_MODEL_DIR": str(self.model),
                    "TAGGER_REDIS_RETRY_MAX_S": "0.5", **self.worker_env, **env}
        worker = ServeProcess(settings, self.workdir / f"worker-{self.name}-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def wait_ready(self, worker: ServeProcess, timeout: float = 120) -> float:
        """Seconds until the worker's /readyz answers 200; ScenarioError if it exits first."""
        def ready() -> bool:
            if worker.process.poll() is not None:
                raise ScenarioError(f"worker exited with {worker.process.returncode}; log {worker.log_path}")
            return worker.get("/readyz")[0] == 200
        return wait_for(ready, timeout, f"worker ready (log {worker.log_path})")

    def writes(self) -> int:
        """Tag writes Redis executed so far (banked across Redis restarts)."""
        stats = self.client.info("commandstats")
        return self.banked_writes + sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                                        for name in ("evalsha", "eval"))

    def kill_redis(self) -> None:
        """SIGKILL Redis mid-stream, after banking the writes it executed (writes paused meanwhile)."""
        self.client.client_pause(60_000, all=False)  # WRITE mode: reads (INFO) still answer
        self.banked_writes = self.writes()
        self.redis.kill()

    def tagged(self, ids: list[str]) -> set[str]:
        """Those ids whose tags are in Redis."""
        return tagged_ids(self.client, ids)

    def committed(self) -> int:
        """Sum of the group's committed offsets over the input partitions."""
        reader = KafkaConsumer(bootstrap_servers=self.broker, group_id=self.group, enable_auto_commit=False)
        try:
            return sum(reader.committed(TopicPartition(self.topic, p)) or 0 for p in range(PARTITIONS))
        finally:
            reader.close(autocommit=False)

    def messages(self, at_least: int) -> int:
        """Messages in the input topic, counted by reading it: at least ``at_least``, then until a poll of
        1 s finds no more. (The embedded broker's ListOffsets answer lags behind the log end.)"""
        reader = KafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False,
                               auto_offset_reset="earliest")
        reader.assign([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
        seen = 0
        try:
            while (batch := reader.poll(timeout_ms=1000)) or seen < at_least:
                seen += sum(len(records) for records in batch.values())
            return seen
        finally:
            reader.close(autocommit=False)

    def settle(self, feed: Feed, timeout: float) -> tuple[list[str], set[str], int]:
        """Wait for the feed, then for every produced id to be tagged and every message committed (or the
        timeout); returns (produced ids, tagged ids, messages in the topic)."""
        feed.join()
        produced = list(feed.acked)
        messages = self.messages(len(produced))
        try:
            wait_for(lambda: len(self.tagged(produced)) == len(produced), timeout, "every document tagged", 0.5)
            wait_for(lambda: self.committed() >= messages, 60, "every offset committed", 0.5)
        except ScenarioError as err:
            log.error("%s", err)  # the result then shows the loss
        return produced, self.tagged(produced), messages

    def result(self, fault: str, injected: str, feed: Feed, recovery: list[float], started: float,
               timeout: float = 300, **checks: Any) -> FaultResult:
        """Settle, count and package the outcome."""
        produced, tagged, messages = self.settle(feed, timeout)
        writes = self.writes()
        checks = {"writes": writes, "messages": messages, "duplicate_messages": messages - len(produced),
                  "committed": self.committed(), "send_failures": len(feed.failed), **checks}
        return FaultResult(fault, injected, len(produced), len(tagged), writes - len(tagged),
                           len(produced) - len(tagged), [round(r, 2) for r in recovery],
                           round(time.monotonic() - started, 1), checks)

    def log_text(self) -> str:
        """Every worker log of this rig, concatenated."""
        return "".join(w.log_path.read_text(errors="replace") for w in self.workers if w.log_path.exists())

    def close(self) -> None:
        """Kill the workers, stop Redis."""
        for worker in self.workers:
            worker.kill()
        self.redis.stop()
