"""Soak benchmark: the worker at 50% of its measured maximum for N minutes while a learner fine-tunes.

    python -m benchmarks.soak [--minutes 10] [--share 0.5] [--rss-bound-mib 50] [--out DIR | --publish]

1. Measure the maximum sustained rate in this run: the worker tags ``--max-docs`` documents while an
   unpaced producer writes them (producer, broker and worker share the machine, as they do in the soak).
   Draining a pre-loaded backlog instead (benchmarks/stream.py) measured 9,982 docs/s here, and a soak at
   half of that stalled the embedded broker after ~390,000 documents (tansu at 100% CPU, no longer
   reading the worker's connection), so that figure is not one this setup can sustain.
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
import uuid
from pathlib import Path
from typing import Any

import redis

from benchmarks.output import add_output_arguments, begin
from benchmarks.rig.process import ServeProcess
from benchmarks.stream import WorkerRun, payloads, produce, services
from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.data import Corpus, hash_split
from model.synthetic import generate_corpus
from model.tagger import Tagger
from model.trainer import feedback_corpora, train
from worker.learn.corrections import CorrectionClient, CorrectionRejected
from worker.learn.registry import Registry
from worker.metrics import histogram_quantile
from worker.services import Service
from worker.settings import KafkaSettings
from worker.store.client import read_tags
from worker.store.keys import tags_key
from worker.stream.kafka import create_topic

log = logging.getLogger("benchmarks.soak")
PARTITIONS = 4
# The learner's settings: small rounds often, as the corrections integration test (which promotes); one
# torch thread, so that on a 2-core machine its rounds leave the worker a core (they starved it otherwise).
LEARNER = {"TAGGER_TORCH_THREADS": "1", "TAGGER_FINETUNE_EVERY": "40", "TAGGER_FINETUNE_MIN_EXAMPLES": "20",
           "TAGGER_FINETUNE_EPOCHS": "8", "TAGGER_FINETUNE_LR": "3e-3", "TAGGER_PROMOTE_EPSILON": "0.02",
           "TAGGER_FINETUNE_INTERVAL_S": "60"}


def weak_model(train_set: Corpus, out: Path) -> Path:
    """An under-trained model (one epoch), saved with the learner's held-out and replay sets."""
    config = TrainConfig(epochs=1, lr=1e-3, min_df=1, seed=0)
    trained = train(train_set, ModelConfig(embed_dim=32, latent_dim=16, label_hidden=32, pooling="sum"), config)
    checkpoint.save(trained, out, feedback_corpora(train_set, config))
    return out


def topic(broker: Service) -> str:
    """A fresh input topic."""
    name = f"soak-{uuid.uuid4().hex[:6]}"
    create_topic(KafkaSettings(kafka_bootstrap_servers=broker.address), name, PARTITIONS)
    return name


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


def sample(worker: WorkerRun, learner: ServeProcess, started: float) -> dict[str, Any]:
    """One observation: time, worker RSS, latency buckets, tagged count, model, learner rounds."""
    samples = worker.samples()
    model = [labels["version"] for labels, v in samples.get("tagger_model_info", []) if v == 1]
    rounds = {labels["result"]: v for labels, v in learner.samples().get("tagger_finetune_runs_total", [])}
    return {"t": round(time.monotonic() - started, 1), "rss_mib": round(worker.memory_mib(), 1),
            "tagged": worker.tagged(), "buckets": worker.buckets(), "model": model[0] if model else "",
            "rounds": rounds, "swaps": sum(v for _, v in samples.get("tagger_model_swaps_total", []))}


def p99_between(first: dict[str, Any], last: dict[str, Any]) -> float | None:
    """p99 end-to-end latency (ms) of the documents tagged between two observations."""
    delta = [(le, count - before) for (le, count), (_, before) in zip(last["buckets"], first["buckets"],
                                                                       strict=True)]
    p99 = histogram_quantile(delta, 0.99)
    return None if p99 is None else round(1000 * p99, 1)


def soak(args: argparse.Namespace, broker: Service, redis_service: Service, workdir: Path) -> dict[str, Any]:
    """Steps 1-3; returns the figures and the observations."""
    corpus = generate_corpus(4000, 10, seed=21)
    train_set, stream = hash_split(corpus, 0.5, seed=0)
    registry = Registry(workdir / "registry")
    registry.publish(weak_model(train_set, workdir / "v1"))

    backlog = topic(broker)
    drain = WorkerRun(broker, redis_service, registry.root, backlog, workdir / "worker-max.log")
    unpaced = threading.Thread(target=produce, args=(broker.address, backlog, payloads(stream, args.max_docs,
                                                                                       backlog)), daemon=True)
    unpaced.start()
    max_rate = drain.drain_rate(args.max_docs, 600)
    unpaced.join()
    drain.terminate()
    rate = args.share * max_rate
    log.info("maximum %.0f docs/s; soaking at %.0f docs/s for %.1f min", max_rate, rate, args.minutes)

    paced = topic(broker)
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
    return {**summarise(args, max_rate, rate, n, observations, corrector, registry), "stalled": stalled}


def summarise(args: argparse.Namespace, max_rate: float, rate: float, n: int, obs: list[dict[str, Any]],
              corrector: Corrector, registry: Registry) -> dict[str, Any]:
    """The figures: RSS after warm-up and at the end, p99 of the first and the last minute, rounds."""
    end = obs[-1]["t"]
    warm = next(o for o in obs if o["t"] >= 60)
    last_start = max((o for o in obs if o["t"] <= end - 60), key=lambda o: o["t"])
    growth = round(obs[-1]["rss_mib"] - warm["rss_mib"], 1)
    first_p99, last_p99 = p99_between(obs[0], warm), p99_between(last_start, obs[-1])
    return {"minutes": args.minutes, "max_docs_per_s": round(max_rate), "rate_docs_per_s": round(rate),
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
            "observations": [{**{k: v for k, v in o.items() if k != "buckets"},
                              "window_p99_ms": p99_between(before, o)} for before, o in itertools.pairwise(obs)]}


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--share", type=float, default=0.5, help="share of the measured maximum rate")
    parser.add_argument("--max-docs", type=int, default=60_000, help="documents for measuring the maximum")
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
    with services(workdir) as (broker, redis_service):
        result = soak(args, broker, redis_service, workdir)
    body = json.dumps(result, indent=1)
    path.parent.mkdir(exist_ok=True)
    path.write_text(body + "\n", encoding="utf-8")
    print(body)
    log.info("results in %s", path)


if __name__ == "__main__":
    main()
