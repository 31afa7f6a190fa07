"""The guard replay (benchmarks.guard_replay) on a feedback result written by hand: what it reads, what it counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.feedback import recorded_rounds
from benchmarks.guard_replay import main, replay, tally
from benchmarks.output import DOCS
from worker.settings import LearnerSettings


def _rows(live: list[float], candidate: list[float], baseline: list[float] | None = None) -> dict[str, Any]:
    """Guard rows where P@1 and nDCG@5 are the same per-document scores."""
    rows: dict[str, Any] = {"live": {"p@1": live, "ndcg@5": live}, "candidate": {"p@1": candidate, "ndcg@5": candidate}}
    if baseline is not None:
        rows["baseline"] = {"p@1": baseline, "ndcg@5": baseline}
    return rows


def _round(result: str, p1: float, hidden: float, heldout: dict[str, Any], judged: dict[str, Any]) -> dict[str, Any]:
    return {"result": result, "candidate_scores": {"p@1": p1, "hidden_recall@5": hidden},
            "guard_rows": {"heldout": heldout, "slice": judged}}


LEVEL = _rows([1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0])  # a held-out set where nothing changed
UNREADABLE = [1.0, 0.0, 0.0, 0.0]  # a slice baseline as good as the live model below


def _run(path: Path) -> Path:
    """Two arms of two rounds, one round written before guard rows had a baseline, and a poisoned round."""
    margin = {"name": "margin", "wrong": 0.3, "p@1": [50.0, 50.0, 50.0], "hidden_recall@5": [0.0] * 3, "rounds": [
        # slice 1 -> 2 of 4 right, not beyond chance (se 0.25 of the summed metric's 0.5 per document) but a
        # gain on a readable slice: promoted today; recorded as rejected; worth +2 points on later documents
        _round("rejected", 52.0, 10.0, LEVEL, _rows([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0] * 4)),
        # the same slice gain where label frequency reads the slice as well: rejected; worth -1 point
        _round("rejected", 49.0, 2.0, LEVEL, _rows([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], UNREADABLE)),
    ]}
    clean = {"name": "margin-clean", "wrong": 0.0, "p@1": [50.0, 50.0], "hidden_recall@5": [0.0, 0.0], "rounds": [
        {"result": "promoted", "candidate_scores": {"p@1": 55.0, "hidden_recall@5": 0.0},
         "guard_rows": {"heldout": LEVEL, "slice": _rows([0.0] * 4, [1.0] * 4)}},  # no baseline: skipped
    ]}
    poisoned = {"result": "rejected", "guard_rows": {"heldout": LEVEL, "slice": _rows([0.0] * 4, [0.0] * 4, [0.0] * 4)}}
    path.write_text(json.dumps({"data": "cooking", "args": {"docs": None}, "arms": [margin, clean],
                                "poisoned": poisoned}), encoding="utf-8")
    return path


def test_recorded_rounds_are_read_with_their_worth_on_later_documents(tmp_path: Path) -> None:
    found = recorded_rounds(_run(tmp_path / "feedback-x.json"))
    assert [(r.group, r.number, r.promoted, r.p1_change, r.hidden_change) for r in found[:2]] == [
        ("cooking, 30% wrong", 1, False, 2.0, 10.0), ("cooking, 30% wrong", 2, False, -1.0, 2.0)]
    poisoned = found[2]
    assert len(found) == 3 and poisoned.group == "cooking, 30% wrong" and poisoned.number == 0
    assert poisoned.p1_change != poisoned.p1_change  # nan: a poisoned round has no worth to measure
    assert list(poisoned.judged) == ["live", "candidate"] and list(poisoned.baseline) == ["p@1", "ndcg@5"]


def test_the_tally_counts_todays_verdicts_against_each_candidates_worth(tmp_path: Path) -> None:
    verdicts = replay(recorded_rounds(_run(tmp_path / "feedback-x.json")), epsilon=0.01, tolerance=0.05)
    assert [promoted for _, promoted in verdicts] == [True, False, False]
    row = tally(verdicts)["cooking, 30% wrong"]
    assert row == {"rounds": 2, "promoted": 1, "better": 1, "better_rejected": 0, "worse": 1, "worse_promoted": 0,
                   "p@1_promoted": 2.0, "hidden_recall@5_promoted": 10.0, "poisoned": 1, "poisoned_promoted": 0,
                   "as_recorded": 2}  # round 1 was recorded as rejected; round 2 and the poisoned round agree
    assert tally(verdicts)["all"] == row


def test_the_command_prints_the_table_and_writes_json(tmp_path: Path, capsys: Any) -> None:
    assert main([str(_run(tmp_path / "feedback-x.json")), "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 rounds from 1 of 1 runs")
    assert "| cooking, 30% wrong | 2 | 1 | 1 | 0 | 1 | 0 | 2 | 10 | 1 | 0 | 2 |" in out
    assert json.loads((tmp_path / "t.json").read_text())["groups"]["all"]["promoted"] == 1


def test_no_recorded_poisoned_round_gets_through_todays_guard() -> None:
    # the poisoned rounds every feedback run since the fifth session recorded (docs/figures): a guard change that
    # lets one through fails here before any benchmark is rerun
    files = sorted((DOCS / "figures").glob("feedback-*.json"))
    poisoned = [r for path in files for r in recorded_rounds(path) if r.number == 0]
    assert len(poisoned) >= 25
    learner = LearnerSettings()  # the guard's defaults
    verdicts = replay(poisoned, epsilon=learner.promote_epsilon, tolerance=learner.heldout_tolerance)
    assert not [r.run for r, promoted in verdicts if promoted]
