"""Guard replay: the learner's guard judged against what its candidates were really worth, offline.

    python -m benchmarks.guard_replay [FILE ...] [--epsilon 0.01] [--tolerance 0.05] [--json F]

Every round the feedback benchmark records (``benchmarks.feedback``, FILEs; default: every
docs/figures/feedback-*.json) keeps the per-document scores the guard judged it on, the live model's and the
candidate's on the held-out set and on the corrections slice, and the candidate's P@1 on the evaluation
documents nobody corrected, promoted or not. This replays today's ``worker.learn.rounds.verdict`` on those
scores and counts, per group of runs (set, share of wrong corrections), how its verdicts met each candidate's
worth: the evaluation P@1 it would have changed by replacing the model served before its round. A candidate
at least ``MARGIN`` points better is *better*, one at least ``MARGIN`` worse is *worse*; poisoned rounds (every
correction wrong) must all be rejected.

What a replay cannot say: a different verdict would have changed the live model, and with it every later
round's comparison; so these are per-round verdicts on recorded pairs, not a rerun of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.feedback import RecordedRound, recorded_rounds
from benchmarks.output import DOCS
from worker.learn.rounds import verdict
from worker.settings import LearnerSettings

MARGIN = 0.5  # evaluation P@1 points: 15 of cooking's 3,081 documents, 13 of biology's 2,666
COLUMNS = ("rounds", "promoted", "better", "better_rejected", "worse", "worse_promoted", "p@1_promoted",
           "hidden_recall@5_promoted", "poisoned", "poisoned_promoted", "as_recorded")


def replay(rounds: Iterable[RecordedRound], epsilon: float, tolerance: float) -> list[tuple[RecordedRound, bool]]:
    """Each recorded round with today's verdict on it (True: promoted)."""
    return [(r, verdict(r.heldout, r.judged, r.baseline, epsilon, tolerance) is None) for r in rounds]


def tally(verdicts: Sequence[tuple[RecordedRound, bool]]) -> dict[str, dict[str, float]]:
    """Per group, then "all": the counts of ``COLUMNS``; ``p@1_promoted`` and ``hidden_recall@5_promoted`` sum
    the promoted candidates' changes (points), ``as_recorded`` counts verdicts the run itself reached.

    >>> r = RecordedRound("a.json", "cooking", 1, {}, {}, {}, False, 0.8, 9.0)
    >>> t = tally([(r, True)])["cooking"]
    >>> t["promoted"], t["better"], t["p@1_promoted"], t["as_recorded"]
    (1, 1, 0.8, 0)
    """
    groups: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for rnd, promoted in verdicts:
        for name in (rnd.group, "all"):
            row = groups[name]
            row["as_recorded"] += promoted == rnd.promoted
            if math.isnan(rnd.p1_change):
                row["poisoned"] += 1
                row["poisoned_promoted"] += promoted
                continue
            better, worse = rnd.p1_change >= MARGIN, rnd.p1_change <= -MARGIN
            row["rounds"] += 1
            row["promoted"] += promoted
            row["better"] += better
            row["better_rejected"] += better and not promoted
            row["worse"] += worse
            row["worse_promoted"] += worse and promoted
            if promoted:
                row["p@1_promoted"] = round(row["p@1_promoted"] + rnd.p1_change, 2)
                row["hidden_recall@5_promoted"] = round(row["hidden_recall@5_promoted"] + rnd.hidden_change, 2)
    return dict(sorted(groups.items(), key=lambda item: (item[0] == "all", item[0])))


def table(groups: dict[str, dict[str, float]]) -> str:
    """The tally as a markdown table."""
    head = "| group | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |"
    rows = [f"| {name} | " + " | ".join(f"{row[c]:g}" for c in COLUMNS) + " |" for name, row in groups.items()]
    return "\n".join([head, "|" + "---|" * (len(COLUMNS) + 1), *rows])


def main(argv: list[str] | None = None) -> int:
    """Replay the guard on the recorded runs; print the table (and write ``--json``)."""
    learner = LearnerSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="feedback benchmark results (default: "
                                                            "docs/figures/feedback-*.json)")
    parser.add_argument("--epsilon", type=float, default=learner.promote_epsilon)
    parser.add_argument("--tolerance", type=float, default=learner.heldout_tolerance)
    parser.add_argument("--json", type=Path, metavar="F", help="also write the tally as JSON")
    args = parser.parse_args(argv)
    files = args.files or sorted((DOCS / "figures").glob("feedback-*.json"))
    rounds = [r for path in files for r in recorded_rounds(path)]
    groups = tally(replay(rounds, args.epsilon, args.tolerance))
    print(f"{len(rounds)} rounds from {len({r.run for r in rounds})} of {len(files)} runs (the rest were written "
          f"before the guard recorded the slice's frequency baseline); epsilon {args.epsilon}, tolerance "
          f"{args.tolerance}, margin {MARGIN} P@1 points\n")
    print(table(groups))
    if args.json:
        result: dict[str, Any] = {"epsilon": args.epsilon, "tolerance": args.tolerance, "margin": MARGIN,
                                  "files": [p.name for p in files], "groups": groups}
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
