"""Soak benchmark: the worker at 50% of its measured maximum for N minutes while a learner fine-tunes.

    python -m benchmarks.soak [--minutes 10] [--share 0.5] [--rss-bound-mib 50] [--out DIR | --publish]
    TAGGER_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 python -m benchmarks.soak ...   # against a real broker

The broker is the one ``TAGGER_KAFKA_BOOTSTRAP_SERVERS`` names, or else the embedded tansu (memory
engine). Tansu slows and then stalls after ~50,000-400,000 documents (docs/reliability.md), so on it the
soak's rate is capped so that the whole run stays under ``--embedded-max-docs`` (25,000), and the output
says so (``rate_capped_by``); only a real broker runs the full rate for the full length.

1. Measure the maximum sustained rate in this run: the worker tags ``--max-docs`` documents while an
   unpaced producer writes them (producer, broker and worker share the machine, as they do in the soak).
   On the embedded broker this runs on a tansu of its own, so the soak starts on a fresh one.
2. Stream documents at ``--share`` of it for ``--minutes`` into a worker serving a model registry, while
   simulated users correct tagged documents toward their true labels and ``tagger learn`` (a subprocess)
   runs guarded fine-tuning rounds, promoting candidates that pass its guard (the worker hot-swaps them).
3. Every ``--every`` seconds record the worker's resident memory, its end-to-end latency histogram and
   the model version. Report RSS after the first minute (warm-up) and at the end, their difference
   against ``--rss-bound-mib``, and the p99 latency of the first minute against the last.

The model is small and synthetic (generated 10-label corpus), so the learner can promote; GPU memory is
not measured here (no GPU on the machine this was written on).

Prints the result as JSON and writes it to OUT/figures/soak.json: a new run folder ``runs/bench/soak-*``
unless ``--out DIR`` says otherwise; ``--publish`` writes docs/figures/soak.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.output import add_output_arguments, begin
from benchmarks.rig.process import ServeProcess
from benchmarks.stream import Addressed, WorkerRun, broker_for, new_topic, payloads, produce
from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.data import Corpus, hash_split
from model.synthetic import generate_corpus
from model.tagger import Tagger
from model.trainer import feedback_corpora, train
from worker.learn.corrections import CorrectionClient, CorrectionRejected
from worker.learn.registry import Registry
from worker.metrics import histogram_quantile
from worker.services import Service, start_redis
from worker.store.client import read_tags
from worker.store.keys import tags_key

log = logging.getLogger("benchmarks.soak")
# The learner's settings: small rounds often, as the corrections integration test (which promotes); one
# torch thread, so that on a 2-core machine its rounds leave the worker a core (they starved it otherwise).
LEARNER = {"TAGGER_TORCH_THREADS": "1", "TAGGER_FINETUNE_EVERY": "40", "TAGGER_FINETUNE_MIN_EXAMPLES": "20",
           "TAGGER_FINETUNE_EPOCHS": "8", "TAGGER_FINETUNE_LR": "3e-3", "TAGGER_PROMOTE_EPSILON": "0.02",
           "TAGGER_FINETUNE_INTERVAL_S": "60"}


def weak_model(train_set: Corpus, out: Path) -> Path:
    """An under-trained model (one epoch), saved with the learner's held-out and replay sets."""
    config = TrainConfig(epochs=1, lr=1e-3, min_df=1, seed=0)
    trained = train(train_set, ModelConfig(embed_dim=32, latent_dim=16, label_hidden=32, pooling="sum"), config)
    checkpoint.save(trained, out, feedback_corpora(train_set, trained.train_config))
    return out


class Corrector(threading.Thread):
    """Simulated users: about ``per_s`` corrections a second toward the true labels of tagged documents."""

    def __init__(self, client: redis.Redis, registry: Registry, stream: Corpus, run: str, per_s: float) -> None:
        super().__init__(name="corrector", daemon=True)
        labels = Tagger.load(registry.path(registry.current()), "cpu").label_names
        self.users = CorrectionClient(client, labels, per_user_per_minute=1_000_000)
        self.client, self.stream, self.run_id, self.per_s = client, stream, run, per_s
        self.sent = self.rejected = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        rng = random.Random(0)
        while not self.stopping.wait(1 / self.per_s):
            i = rng.randrange(len(self.stream))
            doc_id = f"{self.run_id}-{i}"
            stored = self.client.hget(tags_key(doc_id), "tags")
            if stored is None:  # not produced or not tagged yet
                continue
            shown = {name for name, score in read_tags(stored) if score >= 0.5}
            truth = set(self.stream.labels[i % len(self.stream)])
            add, remove = sorted(truth - shown), sorted(shown - truth)
            if not (add or remove):
                continue
            try:
                self.users.submit(doc_id, add, remove, f"user-{rng.randrange(50)}")
                self.sent += 1
            except CorrectionRejected:
                self.rejected += 1


# The worker's own stages: if end-to-end latency drifts while these stay flat, the time is spent before
# the worker has the message (producer, broker, fetch).
STAGES = ("tagger_batch_wait_seconds", "tagger_inference_seconds", "tagger_redis_write_seconds")


def sample(worker: WorkerRun, learner: ServeProcess, started: float) -> dict[str, Any]:
    """One observation: time, worker RSS, latency buckets, stage totals, tagged count, model, learner rounds."""
    samples = worker.samples()
    model = [labels["version"] for labels, v in samples.get("tagger_model_info", []) if v == 1]
    rounds = {labels["result"]: v for labels, v in learner.samples().get("tagger_finetune_runs_total", [])}

    def total(series: str) -> float:
        return sum(v for _, v in samples.get(series, []))

    stages = {name: (total(f"{name}_sum"), total(f"{name}_count")) for name in STAGES}
    return {"t": round(time.monotonic() - started, 1), "rss_mib": round(worker.memory_mib(), 1),
            "tagged": worker.tagged(), "buckets": worker.buckets(), "stages": stages,
            "model": model[0] if model else "", "rounds": rounds,
            "swaps": sum(v for _, v in samples.get("tagger_model_swaps_total", []))}


def stage_means(first: dict[str, Any], last: dict[str, Any]) -> dict[str, float | None]:
    """Mean ms per batch of each worker stage between two observations."""
    means: dict[str, float | None] = {}
    for name in STAGES:
        (sum0, count0), (sum1, count1) = first["stages"][name], last["stages"][name]
        means[name.removeprefix("tagger_").removesuffix("_seconds") + "_ms"] = (
            round(1000 * (sum1 - sum0) / (count1 - count0), 2) if count1 > count0 else None)
    return means


def p99_between(first: dict[str, Any], last: dict[str, Any]) -> float | None:
    """p99 end-to-end latency (ms) of the documents tagged between two observations."""
    delta = [(le, count - before) for (le, count), (_, before) in zip(last["buckets"], first["buckets"],
                                                                       strict=True)]
    p99 = histogram_quantile(delta, 0.99)
    return None if p99 is None else round(1000 * p99, 1)


def max_rate(args: argparse.Namespace, broker: Addressed, redis_service: Service, registry: Registry,
             stream: Corpus, workdir: Path) -> float:
    """Step 1: docs/s while an unpaced producer writes ``--max-docs`` documents."""
    backlog = new_topic(broker)
    drain = WorkerRun(broker, redis_service, registry.root, backlog, workdir / "worker-max.log")
    unpaced = threading.Thread(target=produce, args=(broker.address, backlog, payloads(stream, args.max_docs,
                                                                                       backlog)), daemon=True)
    unpaced.start()
    rate = drain.drain_rate(args.max_docs, 600)
    unpaced.join()
    drain.terminate()
    return rate


def soak_rate(args: argparse.Namespace, maximum: float, embedded: bool) -> tuple[float, str | None]:
    """``--share`` of the maximum; on the embedded broker at most ``--embedded-max-docs`` over the run
    (the second value then says why the rate is lower)."""
    rate = args.share * maximum
    if embedded and rate * args.minutes * 60 > args.embedded_max_docs:
        cap = args.embedded_max_docs / (args.minutes * 60)
        return cap, (f"embedded tansu broker (memory engine, stalls after ~50,000-400,000 documents): rate capped "
                     f"from {rate:.0f} to {cap:.0f} docs/s so the run stays under {args.embedded_max_docs} "
                     "documents; set TAGGER_KAFKA_BOOTSTRAP_SERVERS for the full rate")
    return rate, None


def soak(args: argparse.Namespace, redis_service: Service, workdir: Path) -> dict[str, Any]:
    """Steps 1-3; returns the figures and the observations."""
    corpus = generate_corpus(4000, 10, seed=21)
    train_set, stream = hash_split(corpus, 0.5, seed=0)
    registry = Registry(workdir / "registry")
    registry.publish(weak_model(train_set, workdir / "v1"))
    with broker_for("max", workdir) as broker:
        maximum = max_rate(args, broker, redis_service, registry, stream, workdir)
        embedded = isinstance(broker, Service)
    rate, capped_by = soak_rate(args, maximum, embedded)
    log.info("maximum %.0f docs/s; soaking at %.0f docs/s for %.1f min%s", maximum, rate, args.minutes,
             f" ({capped_by})" if capped_by else "")
    with broker_for("soak", workdir) as broker:
        result = soak_at(args, rate, broker, redis_service, registry, stream, workdir)
    return {"broker": "embedded tansu" if embedded else broker.address, "max_docs_per_s": round(maximum),
            "rate_capped_by": capped_by, **result}


def soak_at(args: argparse.Namespace, rate: float, broker: Addressed, redis_service: Service, registry: Registry,
            stream: Corpus, workdir: Path) -> dict[str, Any]:
    """Steps 2-3 at ``rate``."""
    paced = new_topic(broker)
    worker = WorkerRun(broker, redis_service, registry.root, paced, workdir / "worker-soak.log")
    learner = ServeProcess({"TAGGER_MODEL_DIR": str(registry.root), "TAGGER_REDIS_URL":
                            f"redis://{redis_service.address}/0", **LEARNER}, workdir / "learner.log", "learn")
    n = int(rate * args.minutes * 60)
    feed = threading.Thread(target=produce, args=(broker.address, paced, payloads(stream, n, paced), rate),
                            daemon=True)
    client = redis.Redis.from_url(f"redis://{redis_service.address}/0")
    corrector = Corrector(client, registry, stream, paced, args.corrections_per_s)
    started = time.monotonic()
    feed.start()
    corrector.start()
    observations = [sample(worker, learner, started)]
    stalled = False
    while feed.is_alive() and not stalled:
        feed.join(args.every)
        observations.append(sample(worker, learner, started))
        recent = observations[-max(2, int(60 / args.every)):]
        stalled = len(recent) > 2 and recent[0]["t"] >= 60 and recent[0]["tagged"] == recent[-1]["tagged"]
    corrector.stopping.set()
    if stalled:
        log.error("nothing tagged for 60 s while documents were produced: stopping the soak")
    else:
        worker.drain_rate(n, 300)
        observations.append(sample(worker, learner, started))
    learner.terminate()
    worker.terminate()
    return {**summarise(args, rate, n, observations, corrector, registry), "stalled": stalled}


def summarise(args: argparse.Namespace, rate: float, n: int, obs: list[dict[str, Any]], corrector: Corrector,
              registry: Registry) -> dict[str, Any]:
    """The figures: RSS after warm-up and at the end, p99 of the first and the last minute, rounds."""
    end = obs[-1]["t"]
    warm = next(o for o in obs if o["t"] >= 60)
    last_start = max((o for o in obs if o["t"] <= end - 60), key=lambda o: o["t"])
    growth = round(obs[-1]["rss_mib"] - warm["rss_mib"], 1)
    first_p99, last_p99 = p99_between(obs[0], warm), p99_between(last_start, obs[-1])
    return {"minutes": args.minutes, "rate_docs_per_s": round(rate),
            "docs": n, "tagged": obs[-1]["tagged"],
            "rss_mib": {"start": obs[0]["rss_mib"], "after_first_minute": warm["rss_mib"],
                        "end": obs[-1]["rss_mib"], "max": max(o["rss_mib"] for o in obs),
                        "growth_after_warmup": growth, "bound": args.rss_bound_mib,
                        "within_bound": growth <= args.rss_bound_mib},
            "p99_ms": {"first_minute": first_p99, "last_minute": last_p99},
            "corrections": {"sent": corrector.sent, "rejected": corrector.rejected},
            "finetune_rounds": obs[-1]["rounds"], "model_swaps": obs[-1]["swaps"],
            "versions_served": sorted({o["model"] for o in obs if o["model"]}),
            "registry_history": [e["action"] for e in registry.history()],
            "gpu_memory": "not measured (no GPU)",
            "observations": [{**{k: v for k, v in o.items() if k not in ("buckets", "stages")},
                              "window_p99_ms": p99_between(before, o), **stage_means(before, o)}
                             for before, o in itertools.pairwise(obs)]}


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--share", type=float, default=0.5, help="share of the measured maximum rate")
    parser.add_argument("--max-docs", type=int, default=20_000, help="documents for measuring the maximum")
    parser.add_argument("--embedded-max-docs", type=int, default=25_000,
                        help="on the embedded broker, cap the soak's rate so the run stays under this many documents")
    parser.add_argument("--corrections-per-s", type=float, default=1.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between observations")
    parser.add_argument("--rss-bound-mib", type=float, default=50.0, help="allowed RSS growth after warm-up")
    add_output_arguments(parser)
    return parser


def main() -> None:
    """Run the soak; print the result as JSON and write it to OUT/figures/soak.json."""
    args, folder = begin("soak", build_parser())
    path = folder / "figures" / "soak.json"
    workdir = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    redis_service = start_redis(workdir / "redis")
    try:
        result = soak(args, redis_service, workdir)
    finally:
        redis_service.stop()
    body = json.dumps(result, indent=1)
    path.parent.mkdir(exist_ok=True)
    path.write_text(body + "\n", encoding="utf-8")
    print(body)
    log.info("results in %s", path)


if __name__ == "__main__":
    main()
