"""Feedback benchmark: a deployment that learns from its users' corrections, round by round.

    python -m benchmarks.feedback [--data cooking|biology] [--rounds 6] [--share 0.3] [--wrong 0.3]
                                  [--hidden 5] [--arms margin margin-clean bce] [--quick] [--out DIR | --publish]

A Stack Exchange set, ordered by numeric id, in three parts:

- the **seed** (first 15%): the first live model, trained with the default preset and published into a
  fresh model registry, with its held-out and replay sets for the learner. ``--hidden`` labels that are
  frequent later but rare in the seed (at most 2 seed documents) are removed from its label lists, so
  they can reach the model only through corrections;
- the **stream** (the middle), produced to the input topic in id order in ``--rounds`` rounds. A real
  worker (``tagger serve`` serving the registry, hot-swapping promoted versions) tags it into Redis;
- the **evaluation** set (last 20%), never streamed and never corrected.

Each round, simulated users (a pool of 200) read the stored tags of a ``--share`` of the round's documents
and submit corrections through the real client (validation, rate limit, new-label proposals): toward the
true labels (removing shown tags that are wrong, adding missing ones, new labels included), except a
``--wrong`` share of random ones. The in-process learner ingests them and runs a guarded round; the
benchmark waits until the worker serves a promoted version. After each round the live model is scored
on the evaluation set beside the **ceiling**: the default preset retrained from scratch on the seed plus
every reviewed document with its true labels. Arms (the learner's loss, ``TAGGER_FINETUNE_LOSS``): the
margin loss at ``--wrong`` and at 0% wrong, and BCE at ``--wrong``. The first arm then takes a poisoned
round (every correction wrong: the guard must keep CURRENT) and a one-user flood (the rate limit).

Prints the results as JSON and writes OUT/figures/feedback.json and OUT/figures/feedback.png: a new run
folder ``runs/bench/feedback-*`` unless ``--out DIR`` says otherwise; ``--publish`` writes docs/.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.feedback_plan import Plan, ceiling_curve, columns, correction, make_plan, scores, train_seed
from benchmarks.feedback_plot import plot
from benchmarks.output import add_output_arguments, begin
from benchmarks.quality import DATA, default_configs
from benchmarks.stream import PARTITIONS, Addressed, WorkerRun, produce, services
from model.data import Corpus, read_corpus
from model.tagger import Tagger
from worker.learn.corrections import CorrectionClient, CorrectionRejected, correction_client
from worker.learn.learner import Learner, RoundResult
from worker.learn.registry import Registry
from worker.learn.rounds import as_tagger
from worker.services import Service
from worker.settings import KafkaSettings, Settings
from worker.store.client import TagClient
from worker.store.keys import CORRECTIONS, EXAMPLES, LEARNERS, REJECTED
from worker.stream.kafka import create_topic

log = logging.getLogger("benchmarks.feedback")

USERS = 200  # simulated user names: per-user rate limits are not hit, new labels get distinct users
TAG_TIMEOUT_S, SWAP_TIMEOUT_S = 300.0, 120.0
OLD_LABEL_TOLERANCE = 0.5  # P@1 points the live model may lose on the old labels against the seed
ARMS = ("margin", "margin-clean", "bce")  # margin at --wrong, margin at 0% wrong, BCE at --wrong


@dataclass(frozen=True)
class Arm:
    """One configuration of the simulated deployment."""

    name: str
    loss: str  # the learner's fine-tuning loss
    wrong: float  # share of corrections that are wrong


def arms_for(names: Sequence[str], wrong: float) -> list[Arm]:
    """The named arms, ``margin`` and ``bce`` at ``wrong``, ``margin-clean`` at 0."""
    table = {"margin": Arm("margin", "margin", wrong), "margin-clean": Arm("margin-clean", "margin", 0.0),
             "bce": Arm("bce", "bce", wrong)}
    return [table[name] for name in names]


# ---------------------------------------------------------------------- data


def submit(client: CorrectionClient, doc_id: str, add: list[str], remove: list[str], user: str) -> str:
    """Submit one correction: ``submitted``, or ``rejected_<reason>``."""
    try:
        client.submit(doc_id, add, remove, user)
    except CorrectionRejected as rejected:
        return f"rejected_{rejected.reason}"
    return "submitted"


# ---------------------------------------------------------------------- waiting and learning


def poll(condition: Callable[[], bool], timeout: float, every: float = 0.1) -> float | None:
    """Seconds until ``condition`` held, or None if it did not within ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(every)  # polling a condition under a deadline, not a synchronising sleep
    return time.monotonic() - started


def handled(worker: WorkerRun) -> float:
    """Messages the worker has tagged or dead-lettered."""
    return sum(v for labels, v in worker.samples().get("tagger_messages_total", [])
               if labels.get("outcome") in ("tagged", "dead_lettered"))


def served_version(worker: WorkerRun) -> str:
    """The model version the worker serves now (its ``tagger_model_info``)."""
    return next((labels["version"] for labels, v in worker.samples().get("tagger_model_info", []) if v == 1), "")


def caught_up(client: redis.Redis | redis.RedisCluster) -> bool:
    """Whether the learners' group has read every entry of the corrections stream."""
    last = client.xinfo_stream(CORRECTIONS)["last-generated-id"]
    groups: Any = client.xinfo_groups(CORRECTIONS)
    group = next(g for g in groups if g["name"] in (LEARNERS, LEARNERS.encode()))
    return bool(group["last-delivered-id"] == last)


def ingest_all(learner: Learner) -> int:
    """Ingest until every submitted correction is read; returns the examples stored."""
    stored = learner.ingest()
    while not caught_up(learner.client):
        stored += learner.ingest()
    return stored


def learner_settings(arm: Arm, root: Path, url: str, args: argparse.Namespace) -> Settings:
    """The learner's settings: defaults, the arm's loss, and any learner flags given."""
    tuned = {"round_mode": args.round_mode, "finetune_epochs": args.ft_epochs, "finetune_lr": args.ft_lr,
             "promote_epsilon": args.epsilon}
    return Settings.of(model_dir=str(root), redis_url=url, metrics_port=0, metrics_host="127.0.0.1",
                       finetune_loss=arm.loss, **{k: v for k, v in tuned.items() if v is not None})


# ---------------------------------------------------------------------- one arm


class ArmRun:
    """One arm's deployment: its registry, Redis database, topic and worker; an in-process learner; users."""

    def __init__(self, arm: Arm, registry: Registry, worker: WorkerRun, settings: Settings, broker: str,
                 topic: str, hidden: Sequence[str], seed: int) -> None:
        self.arm, self.registry, self.worker, self.settings = arm, registry, worker, settings
        self.broker, self.topic, self.hidden = broker, topic, set(hidden)
        self.client = redis.Redis.from_url(settings.redis.redis_url)
        self.learner = Learner(settings, self.client)
        self.rng = random.Random(seed)
        self.produced = 0

    @classmethod
    def start(cls, arm: Arm, seed_dir: Path, broker: Addressed, redis_service: Service, db: int, workdir: Path,
              plan: Plan, args: argparse.Namespace) -> ArmRun:
        """Publish the seed into a fresh registry and start a worker serving it on a topic of its own."""
        registry = Registry(workdir / f"registry-{arm.name}")
        registry.publish(seed_dir)
        url = f"redis://{redis_service.address}/{db}"
        topic = f"feedback-{arm.name}-{uuid.uuid4().hex[:6]}"
        create_topic(KafkaSettings(kafka_bootstrap_servers=broker.address), topic, PARTITIONS)
        worker = WorkerRun(broker, redis_service, registry.root, topic, workdir / f"worker-{arm.name}.log",
                           TAGGER_REDIS_URL=url)
        return cls(arm, registry, worker, learner_settings(arm, registry.root, url, args), broker.address, topic,
                   plan.hidden, args.seed)

    def live(self) -> Tagger:
        """The registry's current version."""
        return Tagger.load(self.registry.path(self.registry.current()), "cpu")

    def stream(self, docs: Corpus) -> float:
        """Produce documents as ``{"id", "text"}`` and wait until the worker has handled them; seconds."""
        started = time.perf_counter()
        produce(self.broker, self.topic, [json.dumps({"id": i, "text": t}).encode()
                                          for i, t in zip(docs.ids, docs.texts or [], strict=True)])
        self.produced += len(docs)
        if poll(lambda: self.worker.process.poll() is not None or handled(self.worker) >= self.produced,
                TAG_TIMEOUT_S) is None or self.worker.process.poll() is not None:
            raise RuntimeError(f"benchmark: the worker did not tag {self.produced} documents (log: "
                               f"{self.worker.log_path})")
        return time.perf_counter() - started

    def correct(self, reviewed: Corpus, wrong: float, users: str = "user") -> dict[str, int]:
        """Users read the stored tags of the reviewed documents and correct them; counts by outcome."""
        submitter = correction_client(self.settings, self.client)  # the live model's labels, as `tagger correct`
        stored = TagClient(self.client).lookup(reviewed.ids)
        stats: Counter[str] = Counter()
        for doc_id, truth in zip(reviewed.ids, reviewed.labels, strict=True):
            found = stored[doc_id]
            stats.update(self._review(submitter, doc_id, set(truth), found.tags, wrong, users) if found
                         else {"untagged": 1})
        return dict(stats)

    def _review(self, submitter: CorrectionClient, doc_id: str, truth: set[str], tags: list[tuple[str, float]],
                wrong: float, users: str) -> dict[str, int]:
        shown = {name for name, score in tags if score >= self.settings.corrections.tag_cut}
        is_wrong = self.rng.random() < wrong
        add, remove = correction(truth, shown, sorted(submitter.labels), is_wrong, self.rng)
        if not add and not remove:
            return {"nothing_to_correct": 1}
        outcome = submit(submitter, doc_id, add, remove, f"{users}-{self.rng.randrange(USERS)}")
        return {outcome: 1, "wrong": int(is_wrong), "new_label_adds": len(set(add) - submitter.labels),
                "hidden_label_adds": len(set(add) & self.hidden)}

    def learn(self) -> tuple[RoundResult, dict[str, Any]]:
        """Ingest, run a round, and wait for the worker to serve a promoted version; the step times."""
        started = time.perf_counter()
        stored = ingest_all(self.learner)
        ingested = time.perf_counter()
        outcome = self.decide()
        decided = time.perf_counter()
        swap = self.await_version(outcome.version) if outcome.result == "promoted" else None
        return outcome, {"examples": stored, "ingest": ingested - started, "round": outcome.seconds,
                         "round_steps": dict(outcome.timings),
                         "swap": swap, "correction_to_live": None if swap is None else decided + swap - started}

    def decide(self) -> RoundResult:
        """The learner's round; an error it does not handle itself is recorded as a failed round."""
        try:
            return self.learner.run_round()
        except Exception as err:  # the benchmark records whatever the learner does, and goes on
            log.exception("%s: the learner's round raised", self.arm.name)
            return RoundResult("failed", f"{type(err).__name__}: {err}", {}, {})

    def await_version(self, version: str) -> float | None:
        """Seconds until the worker serves ``version`` (None when it did not within SWAP_TIMEOUT_S)."""
        waited = poll(lambda: served_version(self.worker) == version, SWAP_TIMEOUT_S)
        if waited is None:
            log.warning("%s: the worker did not serve %s within %.0f s", self.arm.name, version, SWAP_TIMEOUT_S)
        return waited

    def round(self, number: int, docs: Corpus, reviewed: Corpus, plan: Plan) -> dict[str, Any]:
        """One round: stream, correct, learn, swap; what happened, how long each step took, and the candidate's
        scores on ``plan``'s evaluation documents."""
        tagging = self.stream(docs)
        started = time.perf_counter()
        users = self.correct(reviewed, self.arm.wrong)
        submitting = time.perf_counter() - started
        outcome, steps = self.learn()
        # the candidate on the evaluation documents, promoted or not: were the guard's verdicts right?
        judged = scores(as_tagger(outcome.model), plan) if outcome.model is not None else None
        seconds = {"tagging": tagging, "corrections": submitting, **steps}
        examples = seconds.pop("examples")
        return {"round": number, "docs": len(docs), "reviewed": len(reviewed), "corrections": users,
                "examples": examples, "result": outcome.result, "reason": outcome.reason,
                "version": outcome.version, "labels_added": outcome.labels_added,
                "guard": {"live": outcome.live, "candidate": outcome.candidate},
                "candidate_scores": judged, "guard_rows": _lists(outcome.rows), "seconds": _rounded(seconds)}

    def poisoned(self, reviewed: Corpus) -> dict[str, Any]:
        """A round on nothing but wrong corrections: the guard must keep CURRENT where it is."""
        before = self.registry.current()
        self.client.delete(EXAMPLES)
        users = self.correct(reviewed, 1.0, users="poisoner")
        outcome, _ = self.learn()
        return {"corrections": users, "result": outcome.result, "reason": outcome.reason,
                "guard": {"live": outcome.live, "candidate": outcome.candidate}, "guard_rows": _lists(outcome.rows),
                "live_unchanged": self.registry.current() == before}

    def flood(self, doc_id: str, attempts: int = 1000) -> dict[str, int]:
        """One user sends ``attempts`` corrections as fast as possible under the configured rate limit."""
        submitter = correction_client(self.settings, self.client)
        outcomes = Counter(submit(submitter, doc_id, [sorted(submitter.labels)[0]], [], "flooder")
                           for _ in range(attempts))
        return {"attempts": attempts, "limit_per_minute": self.settings.corrections.corrections_per_user_per_minute,
                "accepted": outcomes["submitted"], "rate_limited": outcomes["rejected_rate_limited"]}

    def rejected(self) -> dict[str, int]:
        """Rejected corrections by reason, at submission and in the learner (``tagger:corrections:rejected``)."""
        raw: Any = self.client.hgetall(REJECTED)
        return {reason.decode(): int(count) for reason, count in sorted(raw.items())}

    def close(self) -> None:
        """Stop the worker."""
        self.worker.terminate()


def _lists(rows: dict[str, Any]) -> dict[str, Any]:
    """Nested per-document score arrays as JSON lists (4 decimals)."""
    return {k: _lists(v) if isinstance(v, dict) else [round(float(x), 4) for x in v] for k, v in rows.items()}


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else _rounded(v) if isinstance(v, dict) else v
            for k, v in values.items()}


# ---------------------------------------------------------------------- the run


def run_arm(run: ArmRun, plan: Plan, start: dict[str, Any]) -> dict[str, Any]:
    """Every round of one arm, the live model scored after each; curves start at the seed (round 0)."""
    points, rounds = [start], []
    for number, (docs, reviewed) in enumerate(zip(plan.rounds, plan.reviewed, strict=True), 1):
        rounds.append(run.round(number, docs, reviewed, plan))
        points.append({**scores(run.live(), plan), "version": run.registry.current()})
        rounds[-1]["scores"] = points[-1]
        log.info("%s round %d: %s", run.arm.name, number, rounds[-1])
    old = [p["old_p@1"] for p in points]
    return {"name": run.arm.name, "loss": run.arm.loss, "wrong": run.arm.wrong,
            **columns(points, ("p@1", "p@3", "hidden_recall@5", "old_p@1", "labels", "hidden_known")),
            "old_p@1_drop": round(old[0] - old[-1], 2), "old_p@1_worst_drop": round(old[0] - min(old), 2),
            "rounds": rounds, "rejected": run.rejected()}


def run_arms(arms: Sequence[Arm], plan: Plan, seed_dir: Path, start: dict[str, Any], workdir: Path,
             args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each arm in turn on one broker and one redis-server (a database each); the first arm then takes the
    poisoned round and the flood."""
    results: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    with services(workdir) as (broker, redis_service):
        for db, arm in enumerate(arms, 1):
            run = ArmRun.start(arm, seed_dir, broker, redis_service, db, workdir, plan, args)
            try:
                results.append(run_arm(run, plan, start))
                if not extras:
                    extras = {"poisoned": {"arm": arm.name, **run.poisoned(plan.reviewed[-1])},
                              "flood": run.flood(plan.reviewed[0].ids[0])}
            finally:
                run.close()
    return results, extras


def targets(arms: list[dict[str, Any]], extras: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked on this run."""
    final = {arm["name"]: arm["p@1"][-1] for arm in arms}
    found: dict[str, Any] = {f"{arm['name']}_old_p@1_within_{OLD_LABEL_TOLERANCE}":
                             arm["old_p@1_drop"] <= OLD_LABEL_TOLERANCE for arm in arms}
    if "margin" in final and "bce" in final:
        found["margin_at_or_above_bce"] = final["margin"] >= final["bce"]
    found["poisoned_rejected"] = extras.get("poisoned", {}).get("live_unchanged")
    flood = extras.get("flood", {})
    found["flood_limited"] = bool(flood) and flood["accepted"] <= 2 * flood["limit_per_minute"]
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; the result as a JSON-ready dict."""
    workdir = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    corpus = read_corpus(DATA / "stackexchange" / f"{args.data}.csv")
    plan = make_plan(corpus, args.rounds, args.share, args.hidden, args.seed, args.docs)
    log.info("seed %d, stream %d in %d rounds, evaluation %d documents; hidden labels %s", len(plan.seed),
             sum(len(r) for r in plan.rounds), args.rounds, len(plan.evaluation), plan.hidden_docs)
    configs = default_configs(**({"epochs": args.epochs, "patience": args.epochs} if args.epochs else {}))
    seed_dir = train_seed(plan.seed, configs, workdir / "seed")
    start = scores(Tagger.load(seed_dir, "cpu"), plan)
    ceiling = ceiling_curve(plan, configs, start)
    arms, extras = run_arms(arms_for(args.arms, args.wrong), plan, seed_dir, start, workdir, args)
    return {"data": args.data, "docs": {"seed": len(plan.seed), "stream": [len(r) for r in plan.rounds],
                                        "reviewed": [len(r) for r in plan.reviewed],
                                        "evaluation": len(plan.evaluation)},
            "hidden": plan.hidden_docs, "seed": start,
            "ceiling": columns(ceiling, ("p@1", "p@3", "hidden_recall@5", "old_p@1", "train_docs")),
            "arms": arms, **extras, "targets": targets(arms, extras),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}


@dataclass(frozen=True)
class RecordedRound:
    """One guarded round of a run this benchmark wrote (``figures/feedback.json``): what the guard saw and what
    the candidate was worth on the evaluation documents nobody corrected."""

    run: str  # the file's name
    group: str  # "cooking, 30% wrong" (", first N documents" for a --docs run)
    number: int  # the round; 0 for the poisoned round
    heldout: dict[str, dict[str, np.ndarray]]  # model ("live", "candidate") -> metric -> (n_heldout,)
    judged: dict[str, dict[str, np.ndarray]]  # the same on the corrections slice, (n_slice,)
    baseline: dict[str, np.ndarray]  # metric -> (n_slice,): label frequency on the slice
    promoted: bool  # the verdict the run recorded
    p1_change: float  # candidate − the model served before the round: evaluation P@1 points (poisoned: nan)
    hidden_change: float  # the same for the hidden labels' recall@5 (poisoned: nan)


def recorded_rounds(path: Path) -> list[RecordedRound]:
    """Every round of the run saved at ``path`` whose guard rows include the slice's frequency baseline (runs
    written before the guard had one are skipped), every arm's, then the poisoned round's."""
    run = json.loads(path.read_text(encoding="utf-8"))
    docs = run.get("args", {}).get("docs")
    where = f", first {docs} documents" if docs else ""
    found = []
    for arm in run["arms"]:
        group = _group(run["data"], arm["wrong"], where)
        for i, rnd in enumerate(arm["rounds"]):
            if "baseline" in rnd.get("guard_rows", {}).get("slice", {}):
                found.append(_recorded(path.name, group, i + 1, rnd, rnd["candidate_scores"]["p@1"] - arm["p@1"][i],
                                       rnd["candidate_scores"]["hidden_recall@5"] - arm["hidden_recall@5"][i]))
    poisoned = run.get("poisoned", {})
    if "baseline" in poisoned.get("guard_rows", {}).get("slice", {}):
        first = _group(run["data"], run["arms"][0]["wrong"], where)  # the first arm takes the poisoned round
        found.append(_recorded(path.name, first, 0, poisoned, math.nan, math.nan))
    return found


def _group(data: str, wrong: float, where: str) -> str:
    return f"{data}, {wrong:.0%} wrong{where}"


def _recorded(run: str, group: str, number: int, rnd: dict[str, Any], p1: float, hidden: float) -> RecordedRound:
    rows = rnd["guard_rows"]
    arrays = {where: {model: {metric: np.asarray(values, dtype=np.float64) for metric, values in by_metric.items()}
                      for model, by_metric in rows[where].items()} for where in ("heldout", "slice")}
    baseline = arrays["slice"].pop("baseline")
    return RecordedRound(run, group, number, arrays["heldout"], arrays["slice"], baseline,
                         rnd["result"] == "promoted", p1, hidden)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("cooking", "biology"), default="cooking")
    parser.add_argument("--rounds", type=int, help="rounds the stream is split into (default 6; --quick 2)")
    parser.add_argument("--share", type=float, help="share of each round's documents users review (default 0.3; "
                                                    "--quick 0.2)")
    parser.add_argument("--wrong", type=float, default=0.3, help="share of wrong corrections (margin, bce arms)")
    parser.add_argument("--hidden", type=int, default=5, help="labels kept out of the seed model")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--docs", type=int, help="use only the first N documents by id (--quick: 4000)")
    parser.add_argument("--epochs", type=int, help="epochs (and patience) of seed and ceiling training "
                                                   "(default: the preset's; --quick 10)")
    parser.add_argument("--round-mode", choices=("retrain", "finetune"),
                        help="how the learner makes a candidate (default: its setting)")
    parser.add_argument("--ft-epochs", type=int, help="the learner's fine-tuning epochs (default: its setting)")
    parser.add_argument("--ft-lr", type=float, help="the learner's fine-tuning rate (default: its setting)")
    parser.add_argument("--epsilon", type=float, help="the learner's promotion epsilon (default: its setting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (~3 minutes); never writes docs/")
    add_output_arguments(parser)
    return parser


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left unset with the full or the --quick defaults."""
    full = {"rounds": 6, "share": 0.3, "docs": None, "epochs": None}
    quick = {"rounds": 2, "share": 0.2, "docs": 4000, "epochs": 10}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main() -> None:
    """Run the benchmark; print JSON, write figures/feedback.json and figures/feedback.png."""
    args, folder = begin("feedback", build_parser())
    started = time.perf_counter()
    result = run(settle(args))
    result["seconds"] = round(time.perf_counter() - started, 1)
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    (figures / "feedback.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot(result, figures / "feedback.png")
    print(json.dumps(result, indent=1))
    log.info("results in %s", figures)


if __name__ == "__main__":
    main()
