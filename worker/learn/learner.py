"""``tagger learn``: corrections → examples → periodic guarded fine-tuning → promotion (hot swap).

The learner is a process of its own rather than a thread of the worker: a fine-tuning round is seconds
of CPU- or GPU-bound work that would otherwise hold the worker's loop (and its GIL) for far longer than
one batch. The worker only notices the registry's CURRENT pointer change and swaps between batches.

Each step, in order:

1. XREADGROUP new corrections from ``tagger:corrections`` (consumer group ``learners``).
2. For each: validate again (labels may have changed since submission), read the document's stored
   text and current tags, build the corrected label set (tags at or above the cut, minus ``remove``,
   plus ``add``) and store the example in the hash ``tagger:examples``; only then XACK it.
3. Every ``finetune_every`` new examples, or ``finetune_interval_s`` after the last round: fine-tune a
   copy of the live model on the examples (minus a held-out slice) mixed with replayed training data.
4. Judge candidate and live model on the fixed held-out set kept with the model and on the held-out
   slice of corrections. Promote only if held-out P@1 and nDCG@5 drop by at most ``promote_epsilon``
   and the slice's nDCG@5 improves; otherwise reject and record why (history.jsonl, metrics).
5. Promotion writes the candidate as a new registry version (atomic), points CURRENT at it, and
   prunes old versions.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from model import checkpoint
from model.checkpoint import TrainedModel
from model.data import Corpus, hash_unit, label_matrix
from model.errors import ModelError, TaggerError
from model.finetune import FineTuneConfig, fine_tune
from model.tagger import Tagger
from worker.learn.corrections import (
    CorrectionRejected,
    corrected_labels,
    parse_entry,
    validate,
)
from worker.learn.registry import Registry
from worker.metrics import LearnerMetrics, serve_http
from worker.settings import Settings
from worker.store.client import read_tags
from worker.store.connection import connect
from worker.store.keys import CORRECTIONS, EXAMPLES, LEARNERS, REJECTED, doc_key, tags_key

__all__ = ["Learner", "RoundResult"]

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


class Learner:
    """Consumes corrections and runs guarded fine-tuning rounds against a model registry."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None,
                 metrics: LearnerMetrics | None = None) -> None:
        self.settings = settings
        self.rounds = settings.learner  # when rounds run, on what, and the promotion guard
        self.client = client or connect(settings.redis, wait=False)
        self.registry = Registry(settings.model.model_dir)
        self.metrics = metrics or LearnerMetrics(self.client)
        self.stopping = threading.Event()
        self.consumer = f"learner-{int(time.time())}"
        self.new_examples = 0
        self.last_round = time.monotonic()
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
            validate(correction, labels)
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
        """Fine-tune, judge, and promote or reject; every outcome is recorded."""
        started = time.perf_counter()
        self.new_examples, self.last_round = 0, time.monotonic()
        try:
            outcome = self._round()
        except (TaggerError, ValueError, RuntimeError) as err:
            log.exception("fine-tune round failed")
            outcome = RoundResult("failed", f"{type(err).__name__}: {err}", {}, {})
        seconds = time.perf_counter() - started
        outcome = RoundResult(outcome.result, outcome.reason, outcome.live, outcome.candidate, outcome.version,
                              seconds)
        self._record(outcome)
        return outcome

    def _round(self) -> RoundResult:
        live_dir = self.registry.path(self.registry.current())
        live = checkpoint.load(live_dir)
        heldout, replay = checkpoint.load_corpus(live_dir, "heldout"), checkpoint.load_corpus(live_dir, "replay")
        if heldout is None or replay is None:
            raise ModelError(f"{live_dir} has no heldout/replay sets; retrain it with tagger train (text data)")
        train_set, judge_set = self._examples()
        if not len(judge_set) or not len(train_set):
            return RoundResult("rejected", "too few corrected documents to hold a slice out", {}, {})
        tagger = Tagger(live.model, live.featurizer, live.label_names, live.version, live.metrics)
        candidate = self._fine_tune(tagger, train_set, replay)
        scores = {name: {"heldout": t.evaluate(heldout), "slice": t.evaluate(judge_set)}
                  for name, t in (("live", tagger), ("candidate", candidate))}
        verdict = self._verdict(scores["live"], scores["candidate"])
        summary = {name: _summary(s) for name, s in scores.items()}
        if verdict:
            return RoundResult("rejected", verdict, summary["live"], summary["candidate"])
        version = self._promote(live, candidate, scores["candidate"]["heldout"], {"heldout": heldout,
                                                                                 "replay": replay})
        return RoundResult("promoted", "held-out within epsilon and corrections improved", summary["live"],
                           summary["candidate"], version)

    def _examples(self) -> tuple[Corpus, Corpus]:
        """(train, judge) examples; a document's side is fixed by a hash of its id."""
        stored: dict[Any, Any] = self.client.hgetall(EXAMPLES)
        raw = {k.decode(): json.loads(v) for k, v in stored.items()}
        ids = sorted(raw)
        judge = [i for i in ids if hash_unit(i) < self.rounds.corrections_slice]
        train = [i for i in ids if hash_unit(i) >= self.rounds.corrections_slice]

        def corpus(chosen: list[str]) -> Corpus:
            return Corpus(chosen, [raw[i]["labels"] for i in chosen], texts=[raw[i]["text"] for i in chosen])

        return corpus(train), corpus(judge)

    def _fine_tune(self, live: Tagger, examples: Corpus, replay: Corpus) -> Tagger:
        r = self.rounds
        config = FineTuneConfig(epochs=r.finetune_epochs, lr=r.finetune_lr, replay_ratio=r.replay_ratio,
                                loss=r.finetune_loss)
        model = fine_tune(live.model, live.features(examples.texts or []),
                          label_matrix(examples.labels, live.label_names), live.features(replay.texts or []),
                          label_matrix(replay.labels, live.label_names), config)
        return Tagger(model, live.featurizer, live.label_names, "", live.metrics)

    def _verdict(self, live: dict[str, dict[str, float]], candidate: dict[str, dict[str, float]]) -> str:
        """Empty when the candidate may be promoted, else the reason it may not."""
        eps = self.rounds.promote_epsilon
        for metric in ("p@1", "ndcg@5"):
            drop = live["heldout"][metric] - candidate["heldout"][metric]
            if drop > eps:
                return f"held-out {metric} dropped by {drop:.4f} (more than epsilon {eps})"
        if candidate["slice"]["ndcg@5"] <= live["slice"]["ndcg@5"]:
            return (f"corrections slice nDCG@5 did not improve ({live['slice']['ndcg@5']:.4f} -> "
                    f"{candidate['slice']['ndcg@5']:.4f})")
        return ""

    def _promote(self, live: checkpoint.Checkpoint, candidate: Tagger, heldout_scores: dict[str, float],
                 corpora: dict[str, Corpus]) -> str:
        trained = TrainedModel(candidate.model, live.featurizer, live.label_names, live.train_config,
                               heldout_scores, [], live.metrics.get("label_counts", []),
                               int(live.metrics.get("n_train", 0)))
        with tempfile.TemporaryDirectory(dir=self.registry.root) as tmp:
            checkpoint.save(trained, Path(tmp) / "candidate", corpora)
            version = self.registry.publish(Path(tmp) / "candidate", note={"from": live.version})
        removed = self.registry.prune(self.rounds.keep_versions)
        log.info("promoted %s (pruned %s)", version, removed or "nothing")
        return version

    def _record(self, outcome: RoundResult) -> None:
        self.metrics.runs.labels(outcome.result).inc()
        self.metrics.seconds.observe(outcome.seconds)
        for name, scores in (("live", outcome.live), ("candidate", outcome.candidate)):
            if scores:
                self.metrics.heldout_p1.labels(name).set(scores["heldout_p@1"])
        self.metrics.live_version.clear()
        self.metrics.live_version.labels(self.registry.current()).set(1)
        if outcome.result != "promoted":
            self.registry.record(outcome.result, self.registry.current(), reason=outcome.reason,
                                 live=outcome.live, candidate=outcome.candidate)
        log.info("fine-tune round %s in %.1f s: %s", outcome.result, outcome.seconds, outcome.reason)


def _summary(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {f"{part}_{metric}": round(values[metric], 4) for part, values in scores.items()
            for metric in ("p@1", "ndcg@5")}

