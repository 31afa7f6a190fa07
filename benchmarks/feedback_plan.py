"""The feedback benchmark's documents and scores: the seed / stream / evaluation split by id, the hidden
labels, the simulated corrections, and the scores of a model and of the clean-label ceiling."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.data import Corpus
from model.tagger import Tagger
from model.trainer import feedback_corpora, train

log = logging.getLogger("benchmarks.feedback")
SEED_SHARE, EVAL_SHARE = 0.15, 0.20  # first 15% by id train the seed model; the last 20% evaluate


@dataclass(frozen=True)
class Plan:
    """The documents of one run; every arm streams, reviews and is judged on the same ones."""

    seed: Corpus  # hidden labels removed
    rounds: list[Corpus]  # the stream, in id order
    reviewed: list[Corpus]  # the documents users review in each round, true labels
    evaluation: Corpus
    old_evaluation: Corpus  # hidden labels removed, documents left without a label dropped
    hidden: list[str]
    hidden_docs: dict[str, dict[str, int]]  # label -> documents carrying it in seed, stream, evaluation


def by_id(corpus: Corpus, limit: int | None = None) -> Corpus:
    """The documents in numeric id order (the first ``limit`` of them, if given)."""
    order = sorted(range(len(corpus)), key=lambda i: int(corpus.ids[i]))
    return corpus.subset(order[:limit])


def doc_counts(corpus: Corpus) -> Counter[str]:
    """Documents carrying each label."""
    return Counter(label for labels in corpus.labels for label in set(labels))


def choose_hidden(seed: Corpus, stream: Corpus, evaluation: Corpus, k: int, most_seed_docs: int = 2) -> list[str]:
    """The ``k`` labels most frequent in the stream among those on at most ``most_seed_docs`` seed documents
    and on at least one evaluation document (ties by name)."""
    in_seed, in_stream, in_eval = doc_counts(seed), doc_counts(stream), doc_counts(evaluation)
    rare = [label for label in in_stream if in_seed[label] <= most_seed_docs and in_eval[label] > 0]
    return sorted(rare, key=lambda label: (-in_stream[label], label))[:k]


def without(corpus: Corpus, labels: Sequence[str]) -> Corpus:
    """The corpus with ``labels`` removed from every label list; documents left with none are dropped."""
    gone = set(labels)
    kept = [[label for label in doc if label not in gone] for doc in corpus.labels]
    rows = [i for i, doc in enumerate(kept) if doc]
    return Corpus([corpus.ids[i] for i in rows], [kept[i] for i in rows],
                  texts=None if corpus.texts is None else [corpus.texts[i] for i in rows])


def make_plan(corpus: Corpus, rounds: int, share: float, hidden: int, seed: int, limit: int | None) -> Plan:
    """Seed, rounds of stream, reviewed documents per round and evaluation set, with the hidden labels."""
    ordered = by_id(corpus, limit)
    n = len(ordered)
    cut, tail = int(SEED_SHARE * n), int((1 - EVAL_SHARE) * n)
    first, stream, evaluation = (ordered.subset(range(cut)), ordered.subset(range(cut, tail)),
                                 ordered.subset(range(tail, n)))
    names = choose_hidden(first, stream, evaluation, hidden)
    parts = [stream.subset(rows) for rows in np.array_split(np.arange(len(stream)), rounds)]
    reviewed = [part.subset(sorted(random.Random(f"{seed}:{r}").sample(range(len(part)), round(share * len(part)))))
                for r, part in enumerate(parts)]
    counts = {name: {"seed": doc_counts(first)[name], "stream": doc_counts(stream)[name],
                     "evaluation": doc_counts(evaluation)[name]} for name in names}
    return Plan(without(first, names), parts, reviewed, evaluation, without(evaluation, names), names, counts)


# ---------------------------------------------------------------------- models and scores


def train_seed(seed: Corpus, configs: tuple[ModelConfig, TrainConfig], out: Path) -> Path:
    """Train the first live model and save it with the learner's held-out and replay sets."""
    started = time.perf_counter()
    trained = train(seed, *configs)
    checkpoint.save(trained, out, feedback_corpora(seed, trained.train_config))
    log.info("seed model trained on %d documents in %.0f s", len(seed), time.perf_counter() - started)
    return out


def hidden_recall(tagger: Tagger, evaluation: Corpus, hidden: Sequence[str], k: int = 5) -> float | None:
    """Share (%) of (document, hidden label) pairs of the evaluation set whose label is in the top ``k``."""
    wanted = set(hidden)
    rows = [i for i, labels in enumerate(evaluation.labels) if wanted & set(labels)]
    if not rows:
        return None
    texts = evaluation.texts or []
    top = tagger.predict([texts[i] for i in rows], k=k)
    pairs = [(label, {name for name, _ in tags}) for i, tags in zip(rows, top, strict=True)
             for label in wanted & set(evaluation.labels[i])]
    return round(100 * sum(label in names for label, names in pairs) / len(pairs), 2)


def scores(tagger: Tagger, plan: Plan) -> dict[str, Any]:
    """P@1, P@3, old-label P@1 and hidden-label recall@5 (%) on the evaluation set; labels known."""
    overall, old = tagger.evaluate(plan.evaluation), tagger.evaluate(plan.old_evaluation)
    return {"p@1": round(100 * overall["p@1"], 2), "p@3": round(100 * overall["p@3"], 2),
            "old_p@1": round(100 * old["p@1"], 2), "hidden_recall@5": hidden_recall(tagger, plan.evaluation,
                                                                                    plan.hidden),
            "labels": len(tagger.label_names), "hidden_known": sum(h in tagger.label_names for h in plan.hidden)}


def ceiling_curve(plan: Plan, configs: tuple[ModelConfig, TrainConfig], start: dict[str, Any]) -> list[dict[str, Any]]:
    """The default preset retrained from scratch after each round, on the seed plus every document reviewed
    so far with its true labels; round 0 is the seed model (``start``)."""
    points = [{**start, "train_docs": len(plan.seed)}]
    for number in range(1, len(plan.reviewed) + 1):
        corpus = Corpus.concat([plan.seed, *plan.reviewed[:number]])
        trained = train(corpus, *configs)
        points.append({**scores(Tagger.from_trained(trained), plan),
                       "train_docs": len(corpus)})
        log.info("ceiling after round %d: %s", number, points[-1])
    return points


def columns(points: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, list[Any]]:
    """Per-round points as one list per key."""
    return {key: [point[key] for point in points] for key in keys}


# ---------------------------------------------------------------------- simulated users


def correction(truth: set[str], shown: set[str], known: Sequence[str], wrong: bool,
               rng: random.Random) -> tuple[list[str], list[str]]:
    """(add, remove) of one user: toward the true labels, or (``wrong``) two random known labels added and
    one shown tag removed."""
    if wrong:
        add = set(rng.sample(list(known), min(2, len(known)))) - shown
        remove = set(rng.sample(sorted(shown), min(1, len(shown))))
    else:
        add, remove = truth - shown, shown - truth
    return sorted(add), sorted(remove)
