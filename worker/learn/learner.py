"""``tagger learn``: corrections → examples → periodic guarded learning rounds → promotion (hot swap).

The learner is a process of its own rather than a thread of the worker: a fine-tuning round is seconds
of CPU- or GPU-bound work that would otherwise hold the worker's loop (and its GIL) for far longer than
one batch. The worker only notices the registry's CURRENT pointer change and swaps between batches.

Each step, in order:

1. XREADGROUP new corrections from ``tagger:corrections`` (consumer group ``learners``).
2. For each: validate again (labels may have changed since submission), read the document's stored
   text and current tags, build the corrected label set (tags at or above the cut, minus ``remove``,
   plus ``add``) and store the example in the hash ``tagger:examples``; only then XACK it.
3. Every ``finetune_every`` new examples, or ``finetune_interval_s`` after the last round: make a candidate
   (:mod:`worker.learn.rounds`: by default a fresh model retrained on the replayed training documents plus
   every example so far, with the admitted new labels of :mod:`worker.learn.labels` appended), and give
   the labels new since ``tagger train`` their served boost (:mod:`model.boost`).
4. Judge candidate and live model on the same documents: the held-out slice of corrections, those made since
   the live model was (the stream as it is now; at least the newest ``judge_recent``), and the fixed
   held-out set kept with the model (trusted labels from the past). Promote only if the held-out set shows
   no collapse (a drop beyond ``heldout_tolerance`` and chance), the slice no loss (beyond
   ``promote_epsilon`` and chance), and the candidate gains: on the slice, beyond ``promote_epsilon`` and
   chance; or, when the slice's labels relate to their texts (a model ranks them better than label frequency
   does), on the slice at all or on the two sets together (:func:`worker.learn.rounds.verdict`); otherwise
   reject and record why (history.jsonl, metrics, one log line per round).
5. Promotion writes the candidate as a new registry version (atomic), points CURRENT at it, and
   prunes old versions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from model import checkpoint
from model.checkpoint import TrainedModel
from model.data import Corpus, hash_unit
from model.errors import ModelError, TaggerError
from model.tagger import Scored, Tagger, score_ranking
from worker.learn import rounds
from worker.learn.corrections import (
    CorrectionRejected,
    corrected_labels,
    parse_entry,
    validate,
)
from worker.learn.labels import LabelBook
from worker.learn.registry import Registry
from worker.metrics import LearnerMetrics, serve_http
from worker.settings import Settings
from worker.store.client import read_tags
from worker.store.connection import Client, connect
from worker.store.keys import CORRECTIONS, EXAMPLES, LEARNERS, REJECTED, doc_key, tags_key

__all__ = ["Learner", "RoundResult", "round_line"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundResult:
    """What one fine-tuning round decided, and on what evidence."""

    result: str  # "promoted", "rejected" or "failed"
    reason: str
    live: dict[str, float]
    candidate: dict[str, float]
    version: str = ""  # the new live version when promoted
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step: load, train, boost, judge, promote
    labels_added: list[str] = field(default_factory=list)  # admitted new labels the candidate knows
    rule: str = ""  # when rejected: the rule (worker.learn.rounds.REJECTION_RULES)
    # in memory only, for whoever judges the guard itself (the feedback benchmark): the judged candidate, and
    # the per-document scores the verdict read, set ("heldout", "slice") -> model ("live", "candidate", and on
    # the slice "baseline": the label-frequency baseline) -> metric -> (n,)
    model: TrainedModel | None = field(default=None, repr=False, compare=False)
    rows: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict, repr=False, compare=False)


class Learner:
    """Consumes corrections and runs guarded fine-tuning rounds against a model registry."""

    def __init__(self, settings: Settings, client: Client | None = None,
                 metrics: LearnerMetrics | None = None) -> None:
        self.settings = settings
        self.rounds = settings.learner  # when rounds run, on what, and the promotion guard
        self.client = client or connect(settings.redis, wait=False)
        self.registry = Registry(settings.model.model_dir)
        self.metrics = metrics or LearnerMetrics(self.client, rules=rounds.REJECTION_RULES)
        self.labels = LabelBook.from_settings(self.client, settings.corrections)
        self.stopping = threading.Event()
        self.consumer = f"learner-{int(time.time())}"
        self.new_examples = 0
        self.last_round = time.monotonic()
        # live version -> what stands for it on the held-out set it was refit on (_before_refit)
        self.before_refit: dict[str, Scored] = {}
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(CORRECTIONS, LEARNERS, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def stop(self) -> None:
        """Finish the current step and return from ``run``."""
        self.stopping.set()

    def run(self) -> None:
        """Ingest corrections and run rounds until stopped."""
        ops = self.settings.ops
        server = serve_http(self.metrics.registry, ops.metrics_host, ops.metrics_port, lambda: True)
        log.info("learner for the registry %s (live %s): reading corrections from %s; a round after %d new "
                 "corrected documents, or %.0f s after the last round if any arrived; metrics on port %d",
                 self.settings.model.model_dir, self.registry.current(), CORRECTIONS, self.rounds.finetune_every,
                 self.rounds.finetune_interval_s, ops.metrics_port)
        try:
            while not self.stopping.is_set():
                self.ingest(block_ms=1000)
                if self.due():
                    self.run_round()
        finally:
            server.shutdown()
            server.server_close()

    # ------------------------------------------------------------------ steps 1-2

    def ingest(self, block_ms: int = 0, count: int = 500) -> int:
        """Read, validate and store new corrections; returns how many became examples."""
        replies: Any = self.client.xreadgroup(LEARNERS, self.consumer, {CORRECTIONS: ">"}, count=count,
                                         block=block_ms or None)
        stored = 0
        labels = set(checkpoint.read_meta(self.registry.path(self.registry.current())).labels)
        for _, entries in replies or []:
            for entry_id, fields in entries:
                stored += self._store_example(fields, labels)
                self.client.xack(CORRECTIONS, LEARNERS, entry_id)  # after the example is stored, or rejected for good
        self.new_examples += stored
        return stored

    def _store_example(self, fields: dict[bytes, bytes], labels: set[str]) -> int:
        try:
            correction = parse_entry(fields)
            validate(correction, labels, self.labels.open)
            text, tags = self._document(correction.doc_id)
        except CorrectionRejected as rejected:
            self.client.hincrby(REJECTED, rejected.reason, 1)
            log.warning("correction rejected (%s): %s", rejected.reason, rejected)
            return 0
        cut = self.settings.corrections.tag_cut
        example = {"text": text, "labels": corrected_labels(tags, cut, correction.add,
                                                            correction.remove),
                   "user": correction.user, "ts": correction.ts}
        self.client.hset(EXAMPLES, correction.doc_id, json.dumps(example))
        self.metrics.received.inc()
        return 1

    def _document(self, doc_id: str) -> tuple[str, list[tuple[str, float]]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(doc_key(doc_id))
        pipe.hget(tags_key(doc_id), "tags")
        raw_doc, raw_tags = pipe.execute()
        if raw_doc is None or raw_tags is None:
            raise CorrectionRejected("unknown_document", f"document {doc_id!r} is unknown or expired")
        return json.loads(raw_doc)["text"], read_tags(raw_tags)

    # ------------------------------------------------------------------ steps 3-5

    def due(self) -> bool:
        """Enough new examples, or the interval passed with at least one new example."""
        if self.client.hlen(EXAMPLES) < self.rounds.finetune_min_examples or self.new_examples == 0:
            return False
        waited = time.monotonic() - self.last_round
        return self.new_examples >= self.rounds.finetune_every or waited >= self.rounds.finetune_interval_s

    def run_round(self) -> RoundResult:
        """Make a candidate, judge it, and promote or reject it; every outcome is recorded."""
        started = time.perf_counter()
        self.new_examples, self.last_round = 0, time.monotonic()
        timings: dict[str, float] = {}
        try:
            outcome = self._round(timings)
        except (TaggerError, ValueError, RuntimeError) as err:
            log.exception("learning round failed")
            outcome = RoundResult("failed", f"{type(err).__name__}: {err}", {}, {})
        outcome = dataclasses.replace(outcome, seconds=time.perf_counter() - started, timings=timings)
        self._record(outcome)
        return outcome

    def _round(self, timings: dict[str, float]) -> RoundResult:
        clock = _Stopwatch(timings)
        live_dir = self.registry.path(self.registry.current())
        live = checkpoint.load(live_dir)
        heldout, replay = checkpoint.load_corpus(live_dir, "heldout"), checkpoint.load_corpus(live_dir, "replay")
        refit = heldout is None  # then the live model trained on its validation split too (model.trainer.refits)
        if refit:
            heldout = checkpoint.load_corpus(live_dir, "refit_heldout")
        if heldout is None or replay is None:
            raise ModelError(f"{live_dir} has no heldout/replay sets; retrain it with tagger train (text data)")
        names = rounds.label_set(live.label_names, self.labels.admitted(set(live.label_names)), self.rounds)
        new_labels = names[len(live.label_names):]
        train_set, judge_set = self._examples(set(names), _made_ms(live_dir))
        clock.lap("load")
        if not len(judge_set) or not len(train_set):
            return RoundResult("rejected", "too few corrected documents to hold a slice out", {}, {}, rule="too_few")
        trained = rounds.candidate(live, replay, train_set, names, self.rounds)
        clock.lap("train")
        trained = rounds.boosted(trained, heldout, [*live.boost.labels, *new_labels], self.rounds.new_label_cost)
        clock.lap("boost")
        tagger = Tagger.from_checkpoint(live)
        candidate = rounds.as_tagger(trained)
        on_heldout = self._before_refit(live, live_dir, replay, heldout) if refit else tagger.scored(heldout)
        judged = {"live": _judge(tagger, judge_set, on_heldout),
                  "candidate": _judge(candidate, judge_set, candidate.scored(heldout))}
        rows = {"heldout": {n: j.heldout_rows for n, j in judged.items()},
                "slice": {n: j.slice_rows for n, j in judged.items()}}
        baseline = tagger.baseline_scores(judge_set)
        rejection = rounds.verdict(rows["heldout"], rows["slice"], baseline, self.rounds.promote_epsilon,
                                   self.rounds.heldout_tolerance)
        rows["slice"]["baseline"] = baseline
        boosts = {"live": live.boost.weight, "candidate": trained.boost.weight}
        summary = {n: {**_summary({"heldout": j.heldout, "slice": j.slice}), "new_label_boost": boosts[n]}
                   for n, j in judged.items()}
        clock.lap("judge")
        if rejection:
            return RoundResult("rejected", rejection.reason, summary["live"], summary["candidate"],
                               labels_added=new_labels, model=trained, rows=rows, rule=rejection.rule)
        trained = dataclasses.replace(trained, metrics=judged["candidate"].heldout)  # accepted with these scores
        version = self._promote(live.version, trained, {"heldout": heldout, "replay": replay})
        clock.lap("promote")
        return RoundResult("promoted", "within the guard, with a gain", summary["live"],
                           summary["candidate"], version, labels_added=new_labels, model=trained,
                           rows=rows)

    def _before_refit(self, live: checkpoint.Checkpoint, live_dir: Path, replay: Corpus, heldout: Corpus) -> Scored:
        """What stands for a refit live model on its held-out set, which it memorised: the ranking the model gave
        it before the refit, saved with it; for a checkpoint that has none, its settings trained without that set
        (once per live version)."""
        if live.version not in self.before_refit:
            ranking = checkpoint.load_ranking(live_dir, len(live.label_names))
            if ranking is not None and ranking.ids == tuple(heldout.ids):
                scored = score_ranking(ranking.top5, heldout, live.label_names)
            else:
                log.info("the live model %s was refit on its held-out set and saved no ranking of those documents "
                         "from before: judging candidates there against its settings trained without them",
                         live.version)
                scored = rounds.as_tagger(rounds.unrefit(live, replay, heldout)).scored(heldout)
            self.before_refit = {live.version: scored}
        return self.before_refit[live.version]

    def _examples(self, names: set[str], since_ms: int) -> tuple[Corpus, Corpus]:
        """(train, judge) examples, their labels cut to ``names``; a document's side is fixed by a hash of its
        id, and the judge side keeps the corrections since ``since_ms`` (:func:`worker.learn.rounds.recent`).
        A document left with no label (only new labels that are not admitted) waits for a later round."""
        stored: dict[Any, Any] = self.client.hgetall(EXAMPLES)
        raw = {k.decode(): json.loads(v) for k, v in stored.items()}
        labels = {i: [name for name in example["labels"] if name in names] for i, example in raw.items()}
        ids = sorted(i for i in raw if labels[i])
        held = {i: hash_unit(i) < self.rounds.corrections_slice for i in ids}  # the judge side, never trained on
        judge = rounds.recent({i: int(raw[i].get("ts", 0)) for i in ids if held[i]}, since_ms, self.rounds.judge_recent)
        train = [i for i in ids if not held[i]]

        def corpus(chosen: list[str]) -> Corpus:
            return Corpus(chosen, [labels[i] for i in chosen], texts=[raw[i]["text"] for i in chosen])

        return corpus(train), corpus(judge)

    def _promote(self, live_version: str, trained: TrainedModel, corpora: dict[str, Corpus]) -> str:
        """Save the candidate with the live model's held-out and replay sets, publish it, prune old ones."""
        with tempfile.TemporaryDirectory(dir=self.registry.root) as tmp:
            checkpoint.save(trained, Path(tmp) / "candidate", corpora)
            version = self.registry.publish(Path(tmp) / "candidate", note={"from": live_version})
        removed = self.registry.prune(self.rounds.keep_versions)
        log.info("promoted %s (pruned %s)", version, removed or "nothing")
        return version

    def _record(self, outcome: RoundResult) -> None:
        self.metrics.runs.labels(outcome.result).inc()
        self.metrics.seconds.observe(outcome.seconds)
        for name, scores in (("live", outcome.live), ("candidate", outcome.candidate)):
            if scores:
                self.metrics.heldout_p1.labels(name).set(scores["heldout_p@1"])
        live = self.registry.current()
        self.metrics.live_version.clear()
        self.metrics.live_version.labels(live).set(1)
        meta = checkpoint.read_meta(self.registry.path(live))
        self.metrics.labels.set(len(meta.labels))
        self.metrics.boost.set(meta.boost.weight)
        if outcome.result == "promoted":
            self.metrics.admitted.inc(len(outcome.labels_added))
            self.metrics.rejected_in_a_row.set(0)
        else:
            if outcome.result == "rejected":
                self.metrics.rejections.labels(outcome.rule).inc()
            self.metrics.rejected_in_a_row.inc()
            self.registry.record(outcome.result, live, reason=outcome.reason, live=outcome.live,
                                 candidate=outcome.candidate)
        log.info("%s", round_line(outcome))


def round_line(outcome: RoundResult) -> str:
    """The one log line of a round: verdict, time per step, guard metrics of live and candidate, reason.

    >>> print(round_line(RoundResult("promoted", "ok", {"heldout_p@1": 0.5}, {"heldout_p@1": 0.55}, "v2", 12.0,
    ...                              {"train": 10.0}, ["sourdough"])))
    round promoted in 12.0 s (train 10.0 s); new labels: sourdough; heldout_p@1 0.5000 -> 0.5500; ok
    """
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in outcome.timings.items())
    metrics = "; ".join(f"{name} {outcome.live[name]:.4f} -> {outcome.candidate[name]:.4f}"
                        for name in outcome.live if name in outcome.candidate)
    added = f"; new labels: {', '.join(outcome.labels_added)}" if outcome.labels_added else ""
    return (f"round {outcome.result} in {outcome.seconds:.1f} s ({steps}){added}; {metrics or 'not judged'}; "
            f"{outcome.reason}")


@dataclass(frozen=True)
class _Judgement:
    """One model's scores in a round: per document for the guard, averaged for the record."""

    heldout_rows: dict[str, np.ndarray]  # metric -> (n_heldout,)
    slice_rows: dict[str, np.ndarray]  # metric -> (n_slice,)
    heldout: dict[str, float]
    slice: dict[str, float]


def _made_ms(checkpoint_dir: Path) -> int:
    """When the checkpoint was written, in ms since the epoch; 0 when it does not say."""
    created = checkpoint.read_meta(checkpoint_dir).created
    return int(datetime.fromisoformat(created).timestamp() * 1000) if created else 0


def _judge(tagger: Tagger, judge_set: Corpus, on_heldout: Scored) -> _Judgement:
    """``tagger``'s scores on the corrections slice, beside its scores on the held-out set (``on_heldout``: for
    a refit live model, what stands for it there, :meth:`Learner._before_refit`)."""
    on_slice = tagger.scored(judge_set)
    return _Judgement(on_heldout.rows, on_slice.rows, on_heldout.metrics, on_slice.metrics)


def _summary(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {f"{part}_{metric}": round(values[metric], 4) for part, values in scores.items()
            for metric in ("p@1", "ndcg@5")}



class _Stopwatch:
    """Seconds per step of a round, into ``laps`` (step name -> seconds since the previous lap)."""

    def __init__(self, laps: dict[str, float]) -> None:
        self.laps, self.last = laps, time.perf_counter()

    def lap(self, step: str) -> None:
        """Close ``step``: the time since the last lap."""
        now = time.perf_counter()
        self.laps[step] = round(now - self.last, 3)
        self.last = now
