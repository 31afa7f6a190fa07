"""Feedback benchmark: simulated users correct a stream's tags; margin-loss vs BCE fine-tuning under noise.

    python -m benchmarks.feedback [--rounds 4] [--share 0.1] [--wrong 0.3] [--epochs 10] [--out DIR | --publish]

Stack Exchange cooking, ordered by id: the model trains on the earlier 60%, the later 40% arrives as a
stream. Each round, users correct a share of the streamed documents toward their true tags, but a given
share of corrections is wrong (random adds and removes). Corrections go through the real path — the
worker's Redis writes (TagWriter), CorrectionClient (validation, rate limit, Redis Stream) and a
Learner (XREADGROUP, examples, guarded fine-tuning, registry promotion) — once with the margin ranking
loss and once with BCE. P@1 is measured after each round on later documents no user ever corrected.
Then a poisoned round (100% wrong corrections) and a one-user flood (rate limit) are run.

Prints the results as JSON and draws them in OUT/figures/feedback.png: a new run folder
``runs/bench/feedback-*`` unless ``--out DIR`` says otherwise; ``--publish`` writes
docs/figures/feedback.png, which docs/results.md shows.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.output import add_output_arguments, begin
from benchmarks.quality import DATA, default_configs
from model import checkpoint
from model.data import Corpus, read_corpus
from model.tagger import Tagger
from model.trainer import feedback_corpora, train
from worker.learn.corrections import CorrectionClient, CorrectionRejected
from worker.learn.learner import Learner
from worker.learn.registry import Registry, resolve
from worker.services import start_redis
from worker.settings import CorrectionSettings, Settings
from worker.store.keys import EXAMPLES
from worker.store.writer import TagRecord, TagWriter

log = logging.getLogger("benchmarks.feedback")


def split_by_id(corpus: Corpus, train_share: float = 0.6) -> tuple[Corpus, Corpus]:
    """Earlier documents (by numeric id) for training, the later ones as the stream."""
    order = sorted(range(len(corpus)), key=lambda i: int(corpus.ids[i]))
    cut = int(train_share * len(order))
    return corpus.subset(order[:cut]), corpus.subset(order[cut:])


def tag_into_redis(client: redis.Redis, tagger: Tagger, docs: Corpus) -> None:
    """Write the live model's tags for the stream documents, as the worker does."""
    texts = docs.texts or []
    for start in range(0, len(docs), 512):
        chunk = range(start, min(start + 512, len(docs)))
        tags = tagger.predict([texts[i] for i in chunk], k=5)
        records = [TagRecord(docs.ids[i], t, texts[i], "stream", 0, i, int(time.time() * 1000))
                   for i, t in zip(chunk, tags, strict=True)]
        TagWriter(client, doc_ttl_s=0).write(records, tagger.version)


def correct(client: redis.Redis, tagger: Tagger, docs: Corpus, wrong: float, rng: random.Random) -> int:
    """Users correct each document toward its true tags; a ``wrong`` share adds/removes random ones."""
    users = CorrectionClient(client, tagger.label_names, per_user_per_minute=1_000_000)
    sent = 0
    for doc_id, truth, tags in zip(docs.ids, docs.labels, tagger.predict(docs.texts or [], 5), strict=True):
        shown = {name for name, score in tags if score >= 0.5}
        known_truth = set(truth) & set(tagger.label_names)
        if rng.random() < wrong:
            add = set(rng.sample(tagger.label_names, 2)) - shown
            remove = set(rng.sample(sorted(shown), min(1, len(shown))))
        else:
            add, remove = known_truth - shown, shown - known_truth
        if add or remove:
            users.submit(doc_id, sorted(add), sorted(remove), f"user-{rng.randrange(200)}")
            sent += 1
    return sent


def p_at_1(tagger: Tagger, docs: Corpus) -> float:
    """P@1 on documents, as a percentage."""
    return 100 * tagger.evaluate(docs)["p@1"]


def run_arm(loss: str, live_dir: Path, stream: Corpus, evaluation: Corpus, args: argparse.Namespace,
            redis_url: str, db: int) -> dict[str, Any]:
    """Rounds of corrections and fine-tuning with one loss; returns P@1 per round and round details."""
    root = Path(tempfile.mkdtemp(prefix=f"registry-{loss}-"))
    registry = Registry(root)
    registry.publish(live_dir)
    client = redis.Redis.from_url(f"{redis_url}/{db}")
    client.flushdb()
    settings = Settings.of(model_dir=str(root), redis_url=f"{redis_url}/{db}", finetune_loss=loss,
                              finetune_epochs=args.ft_epochs, finetune_lr=args.ft_lr, finetune_min_examples=10,
                              promote_epsilon=args.epsilon, metrics_port=0, metrics_host="127.0.0.1")
    learner = Learner(settings, client)
    rng = random.Random(args.seed)
    curve, rounds = [p_at_1(Tagger.load(resolve(root), "cpu"), evaluation)], []
    per_round = int(args.share * len(stream))
    for number in range(args.rounds):
        live = Tagger.load(resolve(root), "cpu")
        batch = stream.subset(range(number * per_round, (number + 1) * per_round))
        tag_into_redis(client, live, batch)
        sent = correct(client, live, batch, args.wrong, rng)
        submitted = time.perf_counter()
        learner.ingest()
        outcome = learner.run_round()
        to_live = time.perf_counter() - submitted
        curve.append(p_at_1(Tagger.load(resolve(root), "cpu"), evaluation))
        rounds.append({"round": number + 1, "corrections": sent, "result": outcome.result,
                       "reason": outcome.reason, "seconds": round(outcome.seconds, 1),
                       "correction_to_live_s": round(to_live, 1), "p@1": round(curve[-1], 2),
                       "heldout_p@1": {"live": outcome.live.get("heldout_p@1"),
                                       "candidate": outcome.candidate.get("heldout_p@1")}})
        log.info("%s round %d: %s", loss, number + 1, rounds[-1])
    return {"loss": loss, "p@1": [round(v, 2) for v in curve], "rounds": rounds, "registry": root,
            "learner": learner, "client": client}


def poisoned_round(arm: dict[str, Any], stream: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """Every correction wrong: the guard must keep the candidate away from the live model."""
    registry: Registry = Registry(arm["registry"])
    before = registry.current()
    live = Tagger.load(resolve(registry.root), "cpu")
    batch = stream.subset(range(len(stream) - int(args.share * len(stream)), len(stream)))
    client: redis.Redis = arm["client"]
    client.delete(EXAMPLES)
    tag_into_redis(client, live, batch)
    correct(client, live, batch, 1.0, random.Random(99))
    arm["learner"].ingest()
    outcome = arm["learner"].run_round()
    return {"result": outcome.result, "reason": outcome.reason, "live_unchanged": registry.current() == before}


def flood(client: redis.Redis, tagger: Tagger, doc_id: str, attempts: int = 1000) -> dict[str, int]:
    """One user sends ``attempts`` corrections as fast as possible under the default rate limit."""
    limit = CorrectionSettings().corrections_per_user_per_minute
    users = CorrectionClient(client, tagger.label_names, per_user_per_minute=limit)
    accepted = limited = 0
    for _ in range(attempts):
        try:
            users.submit(doc_id, [tagger.label_names[0]], [], "flooder")
            accepted += 1
        except CorrectionRejected as rejected:
            limited += rejected.reason == "rate_limited"
    return {"attempts": attempts, "accepted": accepted, "rate_limited": limited}


def plot(arms: list[dict[str, Any]], path: Path, title: str) -> None:
    """Left: the live model's P@1 per round. Right: each round's candidate on the held-out set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (live_ax, cand_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        live_ax.plot(range(len(arm["p@1"])), arm["p@1"], marker="o", label=f"fine-tune loss: {arm['loss']}")
        rounds = [r["round"] for r in arm["rounds"]]
        cand_ax.plot(rounds, [100 * r["heldout_p@1"]["candidate"] for r in arm["rounds"]], marker="o",
                     label=f"candidate, {arm['loss']}")
    first = arms[0]["rounds"][0]["heldout_p@1"]["live"]
    cand_ax.axhline(100 * first, color="grey", linestyle="--", label="live model")
    live_ax.set(xlabel="correction round (0 = before feedback)", ylabel="live model P@1, uncorrected docs (%)",
                title="what users see")
    cand_ax.set(xlabel="correction round", ylabel="held-out P@1 (%)", title="what the guard saw")
    for ax in (live_ax, cand_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--share", type=float, default=0.08, help="share of the stream corrected per round")
    parser.add_argument("--wrong", type=float, default=0.3, help="share of corrections that are wrong")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the initial training")
    parser.add_argument("--ft-epochs", type=int, default=3)
    parser.add_argument("--ft-lr", type=float, default=2e-4)
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser)
    return parser


def main() -> None:
    """Run both arms, the poisoned round and the flood; print JSON, write the plot."""
    args, folder = begin("feedback", build_parser())
    figure = folder / "figures" / "feedback.png"
    early, later = split_by_id(read_corpus(DATA / "stackexchange/cooking.csv"))
    stream, evaluation = later.subset(range(len(later) // 2)), later.subset(range(len(later) // 2, len(later)))
    # No refit: the held-out set the learner judges candidates on must not have been trained on.
    model_config, config = default_configs(epochs=args.epochs, patience=args.epochs, refit=False)
    workdir = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    started = time.perf_counter()
    checkpoint.save(train(early, model_config, config), workdir / "live", feedback_corpora(early, config))
    log.info("initial model trained in %.0f s", time.perf_counter() - started)
    server = start_redis(workdir / "redis")
    try:
        url = f"redis://{server.address}"
        arms = [run_arm(loss, workdir / "live", stream, evaluation, args, url, db)
                for db, loss in enumerate(("margin", "bce"))]
        poisoned = poisoned_round(arms[0], stream, args)
        live = Tagger.load(resolve(arms[0]["registry"]), "cpu")
        flooded = flood(arms[0]["client"], live, stream.ids[0])
    finally:
        server.stop()
    plot(arms, figure, f"cooking: {int(args.share * 100)}% corrected per round, {int(args.wrong * 100)}% wrong")
    result = {"train_docs": len(early), "stream_docs": len(stream), "eval_docs": len(evaluation),
              "arms": [{k: v for k, v in arm.items() if k in ("loss", "p@1", "rounds")} for arm in arms],
              "poisoned": poisoned, "flood": flooded, "args": {k: str(v) for k, v in vars(args).items()}}
    print(json.dumps(result, indent=1))
    log.info("results in %s", figure)


if __name__ == "__main__":
    main()
