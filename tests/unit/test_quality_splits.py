"""The quality benchmark over several splits: its summary, and which sets can be split again."""

from __future__ import annotations

from benchmarks.quality import DATASETS, split_summary


def test_the_split_summary_compares_rank_ae_with_the_best_peer_split_by_split() -> None:
    def split(ours: float, a: float, b: float) -> list[dict[str, object]]:
        return [{"method": "Rank-AE", "p@1": ours, "chosen": {}}, {"method": "peer-a", "p@1": a},
                {"method": "peer-b", "p@1": b}, {"method": "peer-c", "p@1": 0.9}]

    runs = [split(0.60, 0.58, 0.50), split(0.62, 0.64, 0.70), split(0.70, 0.66, 0.57)]
    runs[2][3] = {"method": "peer-c", "error": "RuntimeError: failed"}  # not in every split: left out
    table = split_summary("set", runs)
    # Rank-AE 60, 62, 70: mean 64, sample variance (16 + 4 + 36) / 2 = 28, sd 5.29
    assert "| Rank-AE | 64.00 | 5.29 | 60.00 | 70.00 |" in table
    assert "| peer-a | 62.67 |" in table and "| peer-b | 59.00 |" in table and "peer-c" not in table
    # against peer-a (best mean): differences 2, -2, 4; mean 1.33, variance (0.44 + 11.11 + 7.11) / 2, sd 3.06
    assert ("Rank-AE − peer-a (the best peer on average), split by split: mean +1.33, sd 3.06, "
            "range -2.00 to +4.00; level or ahead on 2 of 3 splits") in table


def test_hashed_sets_resplit_and_official_splits_do_not() -> None:
    assert DATASETS["rcv1v2"].resplittable and DATASETS["rcv1v2"].split(3) == "80/20 by md5('3:'+row)"
    assert DATASETS["cooking"].split() == "80/20 by md5('0:'+id)"
    assert not DATASETS["reuters"].resplittable and DATASETS["reuters"].split(3) == "ModApte, 90 topics"


def test_a_training_sample_keeps_corpus_order_and_is_the_same_for_a_seed() -> None:
    from benchmarks.quality import first_docs
    from model.data import Corpus

    corpus = Corpus(ids=[f"d{i}" for i in range(10)], labels=[["a"]] * 10, texts=[f"text {i}" for i in range(10)])
    sample = first_docs(corpus, 4, seed=0)
    assert len(sample) == 4 and sample.ids == sorted(sample.ids, key=lambda i: int(i[1:]))
    assert first_docs(corpus, 4, seed=0).ids == sample.ids and first_docs(corpus, 4, seed=1).ids != sample.ids
    assert first_docs(corpus, 10, seed=0) is corpus and first_docs(corpus, 50, seed=0) is corpus


def test_over_training_seeds_the_summary_counts_runs() -> None:
    runs = [[{"method": "Rank-AE", "p@1": ours, "chosen": {}}, {"method": "peer", "p@1": peer}]
            for ours, peer in ((0.50, 0.52), (0.56, 0.52))]
    table = split_summary("set", runs, "run")
    # Rank-AE 50, 56: mean 53, sd sqrt(18) = 4.24; differences -2, +4: mean +1, sd sqrt(18) = 4.24
    assert "test P@1 over 2 runs" in table and "| Rank-AE | 53.00 | 4.24 | 50.00 | 56.00 |" in table
    assert ("Rank-AE − peer (the best peer on average), run by run: mean +1.00, sd 4.24, range -2.00 to +4.00; "
            "level or ahead on 1 of 2 runs") in table


def test_each_training_seed_trains_the_default_with_that_seed() -> None:
    from benchmarks.quality import run_rank_ae
    from model.data import hash_split
    from model.synthetic import generate_corpus

    train, test = hash_split(generate_corpus(n_docs=300, n_labels=5), 0.2)
    rows = [run_rank_ae(train, test, quick=True, seed=seed) for seed in (0, 1)]
    assert [row["settings"]["train"]["seed"] for row in rows] == [0, 1]
    assert rows[0]["settings"]["model"] == rows[1]["settings"]["model"]  # the default otherwise
