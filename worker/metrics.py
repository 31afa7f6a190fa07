"""Every Prometheus metric of the worker, and the HTTP endpoint serving /metrics, /healthz, /readyz.

Names follow Prometheus conventions: ``tagger_`` prefix, base units (``_seconds``), ``_total`` counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from worker.store.keys import REJECTED

__all__ = ["LearnerMetrics", "WorkerMetrics", "histogram_quantile", "serve_http"]

# Fine below 100 ms, where the latency objective sits, so interpolated p50/p99 are close to exact.
_LATENCY_BUCKETS = (0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
                    0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class WorkerMetrics:
    """The worker's metrics, registered on their own registry (one per worker)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.end_to_end = Histogram("tagger_end_to_end_latency_seconds",
                                    "Kafka message timestamp to Redis write acknowledged", buckets=_LATENCY_BUCKETS,
                                    registry=r)
        # The part of end_to_end spent before the worker's poll returned the message: the producer's batching,
        # the broker, the fetch, and the wait for the loop's next poll (a loop busy elsewhere shows up here).
        self.consume_delay = Histogram("tagger_consume_delay_seconds",
                                       "Kafka message timestamp to the worker's poll returning it",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_wait = Histogram("tagger_batch_wait_seconds", "Time a batch stayed open before it was flushed",
                                    buckets=_STAGE_BUCKETS, registry=r)
        self.inference = Histogram("tagger_inference_seconds", "Featurize and model time per batch",
                                   buckets=_STAGE_BUCKETS, registry=r)
        self.redis_write = Histogram("tagger_redis_write_seconds", "Redis pipeline time per batch",
                                     buckets=_STAGE_BUCKETS, registry=r)
        self.batch_size = Histogram("tagger_batch_size", "Documents per batch", buckets=_SIZE_BUCKETS, registry=r)
        self.messages = Counter("tagger_messages_total", "Consumed messages by outcome", ["outcome"], registry=r)
        self.bad_messages = Counter("tagger_bad_messages_total", "Dead-lettered messages by reason", ["reason"],
                                    registry=r)
        self.stale_writes = Counter("tagger_stale_writes_total",
                                    "Results not written because a newer one was stored", registry=r)
        self.redis_errors = Counter("tagger_redis_errors_total", "Failed Redis batch writes (retried)", registry=r)
        self.lag = Gauge("tagger_consumer_lag", "Messages behind the partition's high watermark",
                         ["topic", "partition"], registry=r)
        self.model_info = Gauge("tagger_model_info", "The model being served (value 1)", ["version", "device"],
                                registry=r)
        self.model_swaps = Counter("tagger_model_swaps_total", "Hot swaps to a new model version", registry=r)
        self.commit_failures = Counter("tagger_commit_failures_total",
                                       "Offset commits that failed: unreachable (kept, retried) or rejected "
                                       "(rebalanced; the records are processed again)", ["reason"], registry=r)
        self.dlq_failures = Counter("tagger_dlq_failures_total",
                                    "Dead letters the DLQ topic refused; resent, their offsets held back meanwhile",
                                    registry=r)
        self.undecodable = Counter("tagger_undecodable_batches_total",
                                   "Fetches that failed to decode a record batch (unknown codec, bad checksum): "
                                   "that partition cannot advance until the cause is fixed", registry=r)
        self.kafka_reachable = Gauge("tagger_kafka_reachable", "1 while the group coordinator is connected",
                                     registry=r)
        self.kafka_reachable.set(1)
        self.assigned = Gauge("tagger_assigned_partitions", "Input partitions this worker owns", registry=r)
        for reason in ("unreachable", "rejected"):
            self.commit_failures.labels(reason)
        for outcome in ("tagged", "dead_lettered"):
            self.messages.labels(outcome)

    def set_model(self, version: str, device: str) -> None:
        """Record the served model, replacing any previous one."""
        self.model_info.clear()
        self.model_info.labels(version, device).set(1)


class _RejectedCorrections(Collector):
    """``tagger_corrections_rejected_total{reason}``, read from the Redis hash every submitter increments."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("tagger_corrections_rejected", "Rejected corrections by reason",
                                     labels=["reason"])
        try:
            counts = self.client.hgetall(REJECTED)
        except Exception:  # a scrape must not fail because Redis is briefly away
            counts = {}
        for reason, count in sorted(counts.items()):
            family.add_metric([reason.decode()], float(count))
        yield family


class LearnerMetrics:
    """Metrics of ``tagger learn``: corrections, fine-tune rounds, the live model."""

    def __init__(self, client: Any, registry: CollectorRegistry | None = None, rules: tuple[str, ...] = ()) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("tagger_corrections_received_total", "Corrections stored as examples",
                                registry=r)
        self.runs = Counter("tagger_finetune_runs_total", "Fine-tune rounds by result", ["result"], registry=r)
        self.rejections = Counter("tagger_finetune_rejections_total", "Rounds the promotion guard rejected, by "
                                  "rule", ["rule"], registry=r)
        self.seconds = Histogram("tagger_finetune_seconds", "Duration of a fine-tune round",
                                 buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600), registry=r)
        self.heldout_p1 = Gauge("tagger_heldout_p_at_1", "Held-out P@1 in the last round", ["model"], registry=r)
        self.live_version = Gauge("tagger_live_model_info", "The registry's live version (value 1)", ["version"],
                                  registry=r)
        self.labels = Gauge("tagger_labels_total", "Labels the live model knows", registry=r)
        self.boost = Gauge("tagger_new_label_boost", "The live model's served boost of labels new since tagger "
                           "train", registry=r)
        self.admitted = Counter("tagger_labels_admitted_total", "New labels from corrections in promoted models",
                                registry=r)
        self.rejected_in_a_row = Gauge("tagger_learner_rejected_in_a_row",
                                       "Rounds rejected or failed since the last promotion", registry=r)
        for result in ("promoted", "rejected", "failed"):
            self.runs.labels(result)
        for rule in rules:  # the guard's rules (worker.learn.rounds.REJECTION_RULES), each at 0 from the start
            self.rejections.labels(rule)
        r.register(_RejectedCorrections(client))


def serve_http(registry: CollectorRegistry, host: str, port: int, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz (alive) and /readyz (``ready()``) from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                is_ready = ready()
                self._reply(200 if is_ready else 503, b"ready\n" if is_ready else b"not ready\n", "text/plain")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def histogram_quantile(buckets: Histogram | list[tuple[float, float]], q: float) -> float | None:
    """Estimate the q-quantile from a histogram (or its cumulative ``(le, count)`` buckets), interpolating
    inside a bucket as PromQL's histogram_quantile does; None when it holds no observation."""
    if isinstance(buckets, Histogram):
        buckets = [(float(s.labels["le"]), s.value) for metric in buckets.collect() for s in metric.samples
                   if s.name.endswith("_bucket")]
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = upper, cumulative
    return lower
