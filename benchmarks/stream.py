"""Streaming benchmark: throughput, latency under load, batching gain, memory.

    python -m benchmarks.stream --data reuters [--model DIR] [--docs 20000] [--epochs N] [--processes N]
                                [--redis-cluster] [--worker-cpus CPU ...]

For one model (trained here with the quality benchmark's settings, or given with --model) it measures:
(a) the maximum sustained end-to-end rate — the worker (``tagger serve``, a subprocess) drains a
    pre-loaded backlog into Redis — beside a bare kafka-python consumer reading the same messages;
(b) p50/p99 end-to-end latency (message timestamp → Redis write acknowledged, from the worker's
    histogram) with documents produced at 25%, 50% and 80% of that maximum, and of the part before the
    worker's poll returned the message (producer, broker, fetch, and the wait for the loop's next poll);
(c) the same drain with batches of one document, to show what batching buys;
(d) the worker's peak resident memory (VmHWM);
(e) a model hot swap at 50% load: p99 and worst-bucket latency of documents tagged in the seconds
    around the swap, beside those before it;
(f) the drain's Redis stage (ms per batch write, µs per document) and the keys on each Redis node.

Every phase runs on a fresh broker and Redis: one redis-server, or with ``--redis-cluster`` a local
3-node Redis Cluster (``TAGGER_REDIS_CLUSTER=1`` for the workers). The broker is an embedded tansu, or the
Kafka cluster that ``TAGGER_KAFKA_BOOTSTRAP_SERVERS`` names (then each phase works on new topics there):
on this project's 2-core machine the embedded broker and the load generator share the worker's cores, and
most of its p99 is spent before the worker's poll (docs/results.md), so latency targets are for a broker
on other machines. With ``--worker-cpus`` the workers run
on those CPUs and the broker, Redis and the load generator on the rest, as they would on separate machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis as redis_client
from kafka import KafkaConsumer
from redis.cluster import RedisCluster

from benchmarks.quality import DATASETS, default_configs
from benchmarks.rig.process import ServeProcess
from model import checkpoint
from model.checkpoint import TrainedModel
from model.data import Corpus
from model.trainer import train
from worker.metrics import histogram_quantile
from worker.services import Service, start_redis, start_redis_cluster, start_tansu
from worker.settings import KafkaSettings
from worker.stream import kafka as kafka_clients
from worker.stream.kafka import FETCH_MAX_BYTES, create_topic

log = logging.getLogger("benchmarks.stream")
PARTITIONS = 4


def payloads(test: Corpus, n: int, run: str) -> list[bytes]:
    """n JSON messages cycling through the test documents, with unique ids."""
    texts = test.texts or []
    return [json.dumps({"id": f"{run}-{i}", "text": texts[i % len(texts)]}).encode() for i in range(n)]


def produce(broker: str, topic: str, values: list[bytes], rate: float | None = None) -> None:
    """Send values, as fast as possible or paced at ``rate`` per second."""
    producer = kafka_clients.producer(KafkaSettings(kafka_bootstrap_servers=broker), acks=1)
    started = time.monotonic()
    for i, value in enumerate(values):
        if rate:
            pause = started + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the load generator, not synchronising a test
        producer.send(topic, value)
    producer.flush()
    producer.close()


def bare_consume_rate(broker: str, topic: str, n: int) -> float:
    """Messages per second a plain kafka-python consumer reads from the topic's start."""
    consumer = KafkaConsumer(topic, bootstrap_servers=broker, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
                             heartbeat_interval_ms=1000, fetch_max_wait_ms=10, fetch_max_bytes=FETCH_MAX_BYTES,
                             receive_message_max_bytes=2 * FETCH_MAX_BYTES)  # as the worker's consumer
    seen, started = 0, None
    while seen < n:
        batch = consumer.poll(timeout_ms=1000)
        if batch and started is None:
            started = time.perf_counter()
        seen += sum(len(messages) for messages in batch.values())
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return n / elapsed


class Addressed(Protocol):
    """A service reachable at ``host:port`` (one started here, or a broker given by address)."""

    @property
    def address(self) -> str: ...


END_TO_END = "tagger_end_to_end_latency_seconds"  # message timestamp → Redis write acknowledged
CONSUME_DELAY = "tagger_consume_delay_seconds"  # message timestamp → the worker's poll returning it


class WorkerRun(ServeProcess):
    """``tagger serve`` as a subprocess on its own topic and group, scraped over HTTP."""

    cpus: frozenset[int] | None = None  # the CPUs every worker of this run is pinned to (--worker-cpus)

    def __init__(self, broker: Addressed, redis: Service, model: Path, topic: str, log_path: Path,
                 **settings: str) -> None:
        super().__init__({"TAGGER_KAFKA_BOOTSTRAP_SERVERS": broker.address, "TAGGER_INPUT_TOPIC": topic,
                          "TAGGER_DLQ_TOPIC": f"{topic}.dlq", "TAGGER_GROUP_ID": f"g-{topic}",
                          "TAGGER_REDIS_URL": f"redis://{redis.address}/0", "TAGGER_MODEL_DIR": str(model),
                          "TAGGER_SESSION_TIMEOUT_MS": "6000", "TAGGER_HEARTBEAT_INTERVAL_MS": "1000", **settings},
                         log_path, cpus=self.cpus)
        self._wait(lambda: self.get("/readyz")[1] == "ready\n", 120, "worker ready")

    def _wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"benchmark: gave up waiting for {what}")
            time.sleep(0.05)

    def drain_rate(self, n: int, timeout: float) -> float:
        """Docs/s from the first to the n-th tagged document."""
        self._wait(lambda: self.tagged() > 0, timeout, "first tagged document")
        started = time.perf_counter()
        self._wait(lambda: self.tagged() >= n, timeout, f"{n} tagged documents")
        return n / (time.perf_counter() - started)

    def buckets(self, metric: str = END_TO_END) -> list[tuple[float, float]]:
        """Cumulative buckets (le, count) of a latency histogram: end to end unless ``metric`` names another."""
        return [(float(labels["le"]), v) for labels, v in self.samples().get(f"{metric}_bucket", [])]

    def latency(self, q: float, since: list[tuple[float, float]] | None = None,
                metric: str = END_TO_END) -> float | None:
        """The q-quantile of end-to-end latency (or of ``metric``) in seconds, of observations after ``since``
        if given."""
        now = self.buckets(metric)
        if since:
            now = [(le, count - before) for (le, count), (_, before) in zip(now, since, strict=True)]
        return histogram_quantile(now, q)




def new_topic(broker: Addressed) -> str:
    """A new topic with ``PARTITIONS`` partitions on ``broker``."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    create_topic(KafkaSettings(kafka_bootstrap_servers=broker.address), name, PARTITIONS)
    return name


@dataclass(frozen=True)
class ExternalBroker:
    """A Kafka broker this benchmark did not start (``TAGGER_KAFKA_BOOTSTRAP_SERVERS``)."""

    address: str


@contextmanager
def broker_for(phase: str, workdir: Path) -> Iterator[Addressed]:
    """The broker of one phase: the external one when ``TAGGER_KAFKA_BOOTSTRAP_SERVERS`` names one (each phase
    then works on topics of its own), else a fresh embedded tansu, stopped on exit."""
    external = os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield ExternalBroker(external)
        return
    broker = start_tansu(workdir / f"tansu-{phase}")
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def services(workdir: Path) -> Iterator[tuple[Addressed, Service]]:
    """The phase's broker (``broker_for``) and a redis-server (with ``TAGGER_REDIS_CLUSTER=1`` set: a 3-node
    Redis Cluster, of which the first node is yielded, as the workers are given it), stopped on exit."""
    cluster = start_redis_cluster(workdir / "redis") if os.environ.get("TAGGER_REDIS_CLUSTER") == "1" else None
    redis = cluster.nodes[0] if cluster else start_redis(workdir / "redis")
    try:
        with broker_for(workdir.name, workdir) as broker:
            yield broker, redis
    finally:
        (cluster or redis).stop()


def model_for(train_corpus: Corpus, out: Path, epochs: int | None) -> Path:
    """Train the default model (optionally for a fixed, smaller number of epochs)."""
    configs = default_configs(**({"epochs": epochs, "patience": epochs} if epochs else {}))
    checkpoint.save(train(train_corpus, *configs), out)
    return out


def redis_stage(worker: WorkerRun, docs: int) -> dict[str, float]:
    """The drain's Redis stage from the worker's histogram: ms per batch write and µs per document."""
    samples = worker.samples()
    seconds = sum(v for _, v in samples.get("tagger_redis_write_seconds_sum", []))
    batches = sum(v for _, v in samples.get("tagger_redis_write_seconds_count", [])) or 1
    return {"batches": batches, "ms_per_batch": 1000 * seconds / batches, "us_per_doc": 1e6 * seconds / docs}


def keys_per_node(node: Service) -> list[int]:
    """Keys on each primary of the cluster ``node`` belongs to ([all keys] for a single server)."""
    if os.environ.get("TAGGER_REDIS_CLUSTER") != "1":
        return [int(redis_client.Redis(port=node.port).dbsize())]
    cluster = RedisCluster(host="127.0.0.1", port=node.port)
    try:
        return [int(primary.redis_connection.dbsize()) for primary in cluster.get_primaries()]
    finally:
        cluster.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements for one dataset's model."""
    train_corpus, test = DATASETS[args.data].load()
    workdir = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    model = args.model or model_for(train_corpus, workdir / "model", args.epochs)
    loaded = checkpoint.load(model)
    result: dict[str, Any] = {"data": args.data, "processes": args.processes, "redis_cluster": args.redis_cluster,
                              "broker": os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS") or "embedded tansu",
                              "worker_cpus": sorted(WorkerRun.cpus or ()),
                              "labels": len(loaded.label_names),
                              "docs": args.docs,
                              "model": loaded.model.config.to_dict()}
    # Each phase gets a fresh broker: tansu's memory engine slows and stalls after ~100k-400k documents
    # in total, and the paced runs alone produce that many, so a shared broker would measure its own decay.
    with services(workdir / "drain") as (broker, redis):
        backlog = new_topic(broker)
        produce(broker.address, backlog, payloads(test, args.docs, backlog))
        result["bare_consume_docs_per_s"] = bare_consume_rate(broker.address, backlog, args.docs)
        worker = WorkerRun(broker, redis, model, backlog, workdir / "worker.log")
        result["max_docs_per_s"] = worker.drain_rate(args.docs, 600)
        result["peak_rss_mib"] = worker.memory_mib("VmHWM")
        result["redis_write"] = redis_stage(worker, args.docs)
        result["redis_keys_per_node"] = keys_per_node(redis)
        worker.terminate()
        log.info("max %.0f docs/s, bare consume %.0f msg/s", result["max_docs_per_s"],
                 result["bare_consume_docs_per_s"])

    with services(workdir / "single") as (broker, redis):
        single = new_topic(broker)
        n_single = max(200, args.docs // 20)
        produce(broker.address, single, payloads(test, n_single, single))
        worker = WorkerRun(broker, redis, model, single, workdir / "worker1.log", TAGGER_MAX_BATCH_DOCS="1")
        result["batch1_docs_per_s"] = worker.drain_rate(n_single, 900)
        worker.terminate()

    result["latency"] = {}
    for share in (0.25, 0.5, 0.8):
        with services(workdir / f"paced-{share}") as (broker, redis):
            paced = new_topic(broker)
            worker = WorkerRun(broker, redis, model, paced, workdir / f"worker-{share}.log")
            rate = share * result["max_docs_per_s"]
            n = int(rate * args.seconds)
            produce(broker.address, paced, payloads(test, n, paced), rate=rate)
            worker.drain_rate(n, 300)
            result["latency"][str(share)] = {
                "rate": rate, "docs": n, "p50_ms": 1000 * (worker.latency(0.5) or 0),
                "p99_ms": 1000 * (worker.latency(0.99) or 0),
                "before_worker_p50_ms": 1000 * (worker.latency(0.5, metric=CONSUME_DELAY) or 0),
                "before_worker_p99_ms": 1000 * (worker.latency(0.99, metric=CONSUME_DELAY) or 0)}
            result["peak_rss_mib"] = max(result["peak_rss_mib"], worker.memory_mib("VmHWM"))
            worker.terminate()
    with services(workdir / "swap") as (broker, redis):
        result["hot_swap"] = hot_swap(broker, redis, model, test, new_topic(broker), result["max_docs_per_s"] / 2,
                                      args.seconds, workdir)
    return result


def hot_swap(broker: Addressed, redis: Service, model: Path, test: Corpus, topic: str, rate: float,
             seconds: float, workdir: Path) -> dict[str, Any]:
    """Serve a registry, publish a new version half-way through a paced stream, compare latencies."""
    from worker.learn.registry import Registry

    registry = Registry(workdir / "registry")
    registry.publish(model)
    worker = WorkerRun(broker, redis, registry.root, topic, workdir / "worker-swap.log")
    n = int(rate * seconds)
    producer = threading.Thread(target=produce, args=(broker.address, topic, payloads(test, n, topic), rate))
    producer.start()
    worker._wait(lambda: worker.tagged() >= n / 2, 300, "half the stream tagged")
    before = worker.buckets()
    second = checkpoint.load(model)
    copy_dir = workdir / "swap-copy"
    checkpoint.save(TrainedModel(second.model, second.featurizer, second.label_names, second.train_config,
                                 second.metrics.get("valid", {}), neighbours=second.neighbours, head=second.head,
                                 partner=second.partner), copy_dir)
    swapped_at = time.perf_counter()
    version = registry.publish(copy_dir)
    worker._wait(lambda: f'version="{version}"' in worker.get("/metrics")[1], 60, "the swap")
    swap_s = time.perf_counter() - swapped_at
    producer.join()
    worker.drain_rate(n, 300)
    result = {"rate": rate, "docs": n, "publish_to_swap_s": swap_s,
              "before_p99_ms": 1000 * (histogram_quantile(before, 0.99) or 0),
              "after_p99_ms": 1000 * (worker.latency(0.99, since=before) or 0),
              "after_max_bucket_ms": 1000 * (worker.latency(1.0, since=before) or 0)}
    worker.terminate()
    return result


def isolate_workers(cpus: frozenset[int]) -> None:
    """Pin this process (and so every service it starts later) to the CPUs outside ``cpus``, and the workers
    to ``cpus``."""
    others = os.sched_getaffinity(0) - cpus
    if not others or not cpus <= os.sched_getaffinity(0):
        raise SystemExit(f"--worker-cpus {sorted(cpus)} must name some, not all, of the CPUs "
                         f"{sorted(os.sched_getaffinity(0))}")
    os.sched_setaffinity(0, others)
    WorkerRun.cpus = cpus


def main() -> None:
    """Run the benchmark and print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="reuters")
    parser.add_argument("--model", type=Path, help="a checkpoint to serve instead of training one")
    parser.add_argument("--docs", type=int, default=20_000, help="backlog size for the throughput runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each paced latency run")
    parser.add_argument("--epochs", type=int, help="train for this many epochs (speed does not depend on it)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (TAGGER_PROCESSES)")
    parser.add_argument("--redis-cluster", action="store_true", help="a local 3-node Redis Cluster, not one server")
    parser.add_argument("--worker-cpus", type=int, nargs="+",
                        help="pin the workers to these CPUs and everything else (broker, Redis, the load generator, "
                             "this process) to the others, so the worker's latency is not the machine's contention")
    args = parser.parse_args()
    if args.worker_cpus:
        isolate_workers(frozenset(args.worker_cpus))
    os.environ["TAGGER_PROCESSES"] = str(args.processes)  # every worker this run starts inherits them
    os.environ["TAGGER_REDIS_CLUSTER"] = "1" if args.redis_cluster else "0"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
