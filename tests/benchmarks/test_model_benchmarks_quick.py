"""The ablation and width-frontier benchmarks' quick mode on bibtex (2 epochs, a few seconds each).

Skipped when the shared datasets are absent.
"""

from __future__ import annotations

import pytest

from benchmarks import ablation, frontier, quality
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "bibtex").is_dir(),
                                reason=f"shared datasets not found at {SHARED_DATA}")


def test_frontier_row_has_quality_and_model_only_speed() -> None:
    row = frontier.measure("bibtex", 64, quick=True)
    assert (row["width"], row["vocabulary"], row["labels"]) == (64, 1836, 159)
    assert 0.0 < row["p@1"] <= 1.0 and row["model_docs_per_s"] > 0
    assert "| bibtex | 64 | 1,836 | 159 |" in frontier.markdown([row])
    assert row["weights"] == "network alone" or row["weights"].count(" / ") == 2  # as the trainer chose


def test_ablation_scores_the_default_and_each_of_its_heads_alone() -> None:
    train_corpus, test = quality.DATASETS["bibtex"].load()
    rows = ablation.run_variant("default", "default", {"embed_dim": 64}, train_corpus, test, quick=True)
    assert [r["variant"] for r in rows] == ["default", "default: tag head alone (share 0)",
                                            "default: decoder alone (share 1)"]
    assert all(0.0 <= r["p@1"] <= 1.0 for r in rows)
    assert rows[0]["ae_share"] in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
    table = ablation.markdown("bibtex", rows)
    assert table.count("\n| default") == 3


def test_the_quality_table_names_the_neighbour_weights_the_trainer_chose() -> None:
    scores = {m: 0.5 for m in ("p@1", "p@3", "p@5", "ndcg@1", "ndcg@3", "ndcg@5")}
    chosen = {"epoch": 3, "epochs_run": 6, "valid_p@1": 0.6, "ae_share": 0.1,
              "neighbours": {"k": 50, "power": 2.0, "share": 0.3, "votes": 0.1, "centroids": 0.6}}
    row = {"method": "Rank-AE", **scores, "train_seconds": 1.0, "predict_docs_per_s": 10.0, "chosen": chosen}
    table = quality.markdown("set", "split", 10, 5, [row, {**row, "chosen": {**chosen, "neighbours": None}}])
    assert "neighbour scores k=50, power 2; network 0.3, votes 0.1, centroids 0.6" in table
    assert "no neighbour scores" in table
