"""Nearest-neighbour scores: the votes and label centroids by hand, the blend, the trainer's choice, the
checkpoint file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model import checkpoint
from model.config import preset
from model.cost import ServedCost, served_cost
from model.errors import CheckpointError, ConfigError
from model.neighbours import SETTINGS, Fold, Neighbours, choose
from model.synthetic import generate_corpus
from model.tagger import Tagger
from model.trainer import choice_rows, train

# (max_doc_freq=1 below: in an index of three, every feature is "common" and would be left out.)
# Three indexed documents over two features: (1, 0) tagged {0}, (0, 1) tagged {1}, (1, 1) tagged {0, 1}.
ROWS = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
LABELS = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
QUERY = sp.csr_matrix(np.array([[2.0, 0.0]]))  # cosine 1 to the first, 0 to the second, 1/√2 to the third


@pytest.mark.parametrize("dense_index", [0.0, 2.0], ids=["dense", "sparse"])
def test_votes_are_the_similarity_weighted_share_of_the_k_nearest(dense_index: float,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("model.neighbours._DENSE_INDEX", dense_index)  # 0: every index dense; 2: none
    index = Neighbours.index(ROWS, LABELS, k=2, power=1.0, share=0.5, max_doc_freq=1)
    assert isinstance(index._columns, np.ndarray) == (dense_index == 0.0)
    # k=2 keeps the first and third (cosines 1 and 0.7071): weights 1/1.7071 and 0.7071/1.7071.
    np.testing.assert_allclose(index.votes(QUERY), [[1.0, 0.7071 / 1.7071]], atol=1e-4)
    # power 2 squares the cosines: weights 1 and 0.5, so label 1 gets 0.5 / 1.5.
    squared = Neighbours.index(ROWS, LABELS, k=2, power=2.0, share=0.5, max_doc_freq=1).votes(QUERY)
    np.testing.assert_allclose(squared, [[1.0, 1 / 3]], atol=1e-4)


def test_k_beyond_the_index_uses_every_document_and_an_empty_query_votes_nothing_useful() -> None:
    votes = Neighbours.index(ROWS, LABELS, k=10, power=1.0, share=0.5, max_doc_freq=1).votes(QUERY)
    np.testing.assert_allclose(votes, [[1.0, 0.7071 / 1.7071]], atol=1e-4)  # the orthogonal one weighs 0
    empty = Neighbours.index(ROWS, LABELS, k=2, power=1.0, share=0.5, max_doc_freq=1).votes(sp.csr_matrix((1, 2)))
    assert np.isfinite(empty).all() and empty.sum() == 0


def test_features_in_most_indexed_documents_are_left_out_of_the_index() -> None:
    # 20 documents: feature 0 in all of them, feature 1 in two (10%, kept: not more than 10%).
    x = sp.csr_matrix(np.array([[1.0, 1.0]] * 2 + [[1.0, 0.0]] * 18))
    rows = Neighbours.index(x, sp.csr_matrix(np.ones((20, 1))), k=1, power=1.0, share=0.5).rows
    assert rows[:, 0].nnz == 0 and rows[:2, 1].toarray().ravel().tolist() == [1.0, 1.0]


def test_the_served_score_blends_network_and_votes_by_the_share() -> None:
    neighbours = Neighbours.index(ROWS, LABELS, k=2, power=2.0, share=0.25, max_doc_freq=1)
    served = neighbours.blend(torch.tensor([[0.0, 1.0]]), QUERY)
    # 0.25·(0, 1) + 0.75·(1, 1/3) = (0.75, 0.5)
    np.testing.assert_allclose(served.numpy(), [[0.75, 0.5]], atol=1e-4)


@pytest.mark.parametrize("dense_limit", [1 << 24, 0], ids=["dense", "sparse"])
def test_a_label_centroid_is_the_unit_sum_of_its_rows_and_scored_by_cosine(dense_limit: int,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("model.neighbours._DENSE_CENTROIDS", dense_limit)
    # Label 0: (1, 0) + (1, 1)/√2 = (1.7071, 0.7071), unit (0.9239, 0.3827); label 1 the mirror image.
    neighbours = Neighbours.index(ROWS, LABELS, k=1, power=1.0, share=0.5, max_doc_freq=1)
    np.testing.assert_allclose(neighbours.centroid_scores(QUERY), [[0.9239, 0.3827]], atol=1e-4)
    # A feature the index never saw does not dilute the cosine; a label on no indexed document scores 0.
    wider = Neighbours.index(sp.hstack([ROWS, sp.csr_matrix((3, 1))]).tocsr(),
                             sp.hstack([LABELS, sp.csr_matrix((3, 1))]).tocsr(), 1, 1.0, 0.5, max_doc_freq=1)
    np.testing.assert_allclose(wider.centroid_scores(sp.csr_matrix(np.array([[2.0, 0.0, 5.0]]))),
                               [[0.9239, 0.3827, 0.0]], atol=1e-4)


def test_the_served_score_weighs_network_votes_and_centroids() -> None:
    neighbours = Neighbours.index(ROWS, LABELS, k=2, power=2.0, share=0.5, max_doc_freq=1, centroids=0.25)
    served = neighbours.blend(torch.tensor([[0.0, 1.0]]), QUERY)
    # 0.5·(0, 1) + 0.25·(1, 1/3) + 0.25·(0.9239, 0.3827) = (0.4810, 0.6790)
    np.testing.assert_allclose(served.numpy(), [[0.4810, 0.6790]], atol=1e-4)
    assert neighbours.votes_weight == pytest.approx(0.25)


def test_validation_takes_the_centroids_where_the_votes_cannot_help() -> None:
    x_valid = sp.csr_matrix(np.array([[3.0, 0.0], [0.0, 2.0]]))
    y_valid = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0]]))
    wrong = np.array([[0.1, 0.9], [0.9, 0.1]])
    # k = the whole index with power 0: every document votes 1/3, so both labels get 2/3 for every query.
    # Centroids put the right label 0.9239 − 0.3827 = 0.5412 ahead; the network, 0.8·share behind: with
    # share 0.1, centroid weights from 0.2 up rank both right, and the one without votes (0.9) is taken.
    chosen = choose([Fold(wrong, ROWS, LABELS, x_valid)], y_valid, settings=((3, 0.0),), shares=(0.1,), max_doc_freq=1)
    assert chosen is not None and (chosen.share, chosen.centroids, chosen.votes_weight) == (0.1, 0.9, 0.0)
    # A network share of 0.9 leaves at most 0.1 to the centroids: not enough, so the network stays alone.
    assert choose([Fold(wrong, ROWS, LABELS, x_valid)], y_valid, settings=((3, 0.0),), shares=(0.9,),
                  max_doc_freq=1) is None


def test_votes_are_kept_only_where_they_beat_the_blend_without_them() -> None:
    x_valid = sp.csr_matrix(np.array([[3.0, 0.0], [0.0, 2.0]]))
    y_valid = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0]]))
    right = np.array([[0.9, 0.1], [0.1, 0.9]])  # the network already ranks both documents right
    assert choose([Fold(right, ROWS, LABELS, x_valid)], y_valid, max_doc_freq=1) is None
    wrong = np.array([[0.1, 0.9], [0.9, 0.1]])  # ranked wrong; the nearest neighbour and the centroids right
    # Share 0.3 with votes 0.7 (k=1) ranks both right: 0.7 + 0.03 against 0.27; so does share 0.3 with
    # centroids 0.7: 0.03 + 0.6467 against 0.27 + 0.2679. Equal P@1, so the blend without votes is kept.
    chosen = choose([Fold(wrong, ROWS, LABELS, x_valid)], y_valid, settings=((1, 1.0),), shares=(0.9, 0.3),
                    max_doc_freq=1)
    assert chosen is not None and (chosen.share, chosen.centroids, chosen.votes_weight) == (0.3, 0.7, 0.0)
    # One document whose nearest neighbour is right and whose nearest centroid is wrong: label 0 on (1, 0)
    # and (0.6, 0.8), centroid (0.894, 0.447); label 1 on (0.8, 0.6) and (0, 1), centroid (0.447, 0.894).
    # The query (0.8, 0.6) is closer to label 0's centroid (0.983 against 0.894) but is label 1's document.
    rows = sp.csr_matrix(np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]]))
    labels = sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    query, truth = sp.csr_matrix(np.array([[0.8, 0.6]])), sp.csr_matrix(np.array([[0.0, 1.0]]))
    chosen = choose([Fold(np.array([[0.9, 0.1]]), rows, labels, query)], truth, settings=((1, 1.0),), shares=(0.3,),
                    max_doc_freq=1)
    assert chosen is not None
    assert (chosen.k, chosen.share, chosen.centroids, chosen.votes_weight) == (1, 0.3, 0.0, 0.7)
    # With no settings (the trainer's answer to votes too slow to serve) the votes are not tried: share 0.3
    # with centroids 0.7 ranks it wrong (0.27 + 0.688 against 0.03 + 0.626), so the network alone is kept.
    assert choose([Fold(np.array([[0.9, 0.1]]), rows, labels, query)], truth, settings=(), shares=(0.3,),
                  max_doc_freq=1) is None


@pytest.fixture(scope="module")
def corpus_split():  # type: ignore[no-untyped-def]
    corpus = generate_corpus(400, 8, seed=5)
    return corpus.subset(range(300)), corpus.subset(range(300, 400))


def test_a_saved_index_is_loaded_and_served_as_trained(corpus_split, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_config, train_config = preset("default", epochs=2, patience=2)
    trained = train(corpus_split[0], model_config, train_config)
    x = trained.featurizer.transform(corpus_split[0].inputs)
    labels = sp.csr_matrix(np.eye(x.shape[0], len(trained.label_names)))
    # one to keep, whatever validation chose
    trained.neighbours = Neighbours.index(x, labels, 5, 2.0, 0.5, centroids=0.3)
    checkpoint.save(trained, tmp_path / "m")
    loaded = Tagger.load(tmp_path / "m", "cpu")
    assert loaded.neighbours is not None
    assert (loaded.neighbours.k, loaded.neighbours.power, loaded.neighbours.share,
            loaded.neighbours.centroids) == (5, 2.0, 0.5, 0.3)
    assert (loaded.neighbours.rows != trained.neighbours.rows).nnz == 0
    texts = corpus_split[1].texts or []
    assert loaded.predict(texts, 3) == Tagger.from_trained(trained).predict(texts, 3)


def test_an_index_saved_before_the_centroids_serves_votes_alone(corpus_split, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_config, train_config = preset("default", epochs=1, patience=1)
    trained = train(corpus_split[0], model_config, train_config)
    x = trained.featurizer.transform(corpus_split[0].inputs)
    trained.neighbours = Neighbours.index(x, sp.csr_matrix(np.eye(x.shape[0], len(trained.label_names))), 5, 1.0,
                                          0.6)
    checkpoint.save(trained, tmp_path / "m")
    path = tmp_path / "m" / checkpoint.NEIGHBOURS
    with np.load(path) as npz:
        fields = {name: npz[name] for name in npz.files}
    with path.open("wb") as out:  # the earlier layout: setting = (k, power, share)
        np.savez(out, **{**fields, "setting": fields["setting"][:3]})
    loaded = checkpoint.load(tmp_path / "m").neighbours
    assert loaded is not None
    assert (loaded.share, loaded.centroids, loaded.votes_weight) == (0.6, 0.0, pytest.approx(0.4))


def test_a_damaged_or_mismatched_index_is_refused(corpus_split, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_config, train_config = preset("default", epochs=1, patience=1)
    trained = train(corpus_split[0], model_config, train_config)
    trained.neighbours = Neighbours.index(ROWS, LABELS, 1, 1.0, 0.5)  # 2 features, 2 labels: not this model's
    checkpoint.save(trained, tmp_path / "m")
    with pytest.raises(CheckpointError, match="neighbour index has rows"):
        checkpoint.load(tmp_path / "m")
    (tmp_path / "m" / checkpoint.NEIGHBOURS).write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="damaged neighbour index"):
        checkpoint.load(tmp_path / "m")


def test_the_validation_metrics_kept_are_those_of_the_served_blend() -> None:
    from model.trainer import split_validation

    corpus = generate_corpus(600, 10, seed=3)
    # One epoch leaves the network weak enough that a blend with the votes wins on validation.
    model_config, train_config = preset("default", epochs=1, patience=1, min_valid=0, refit=False)  # 10% held out
    trained = train(corpus, model_config, train_config)
    assert trained.neighbours is not None
    valid = split_validation(corpus, train_config.valid_fraction, train_config.seed)[1]
    served = Tagger.from_trained(trained).evaluate(valid)
    assert trained.metrics["p@1"] == pytest.approx(served["p@1"]) and trained.metrics["ndcg@5"] == pytest.approx(
        served["ndcg@5"])


def test_the_search_counts_are_the_block_s_entries_and_the_product_s_multiply_adds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("model.neighbours._DENSE_INDEX", 2.0)  # a sparse index
    index = Neighbours.index(ROWS, LABELS, k=2, power=1.0, share=0.5, max_doc_freq=1)
    # Feature 0 is on indexed documents 0 and 2, feature 1 on 1 and 2. QUERY (feature 0) meets 2 documents in 2
    # multiply-adds; (1, 1) meets all 3 in 4. Mean per query: 2.5 similarities, 3 multiply-adds.
    queries = sp.vstack([QUERY, sp.csr_matrix(np.array([[1.0, 1.0]]))], format="csr")
    assert index.search_counts(queries) == (2.5, 3.0)
    monkeypatch.setattr("model.neighbours._COUNT_ENTRIES", 3)  # blocks of one query (3 indexed documents)
    assert index.search_counts(queries) == (2.5, 3.0)
    assert index.search_counts(sp.csr_matrix((0, 2))) == (0.0, 0.0)
    monkeypatch.setattr("model.neighbours._DENSE_INDEX", 0.0)  # a dense index: every document, one BLAS product
    dense = Neighbours.index(ROWS, LABELS, k=2, power=1.0, share=0.5, max_doc_freq=1)
    assert dense.search_counts(queries) == (3.0, 0.0)


def test_votes_too_dear_to_serve_are_not_tried_and_the_floor_reads_a_count(  # type: ignore[no-untyped-def]
        corpus_split, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    tried: list[tuple[tuple[int, float], ...]] = []  # the vote settings the trainer lets validation try
    costs: list[ServedCost] = []

    def spy(*args, settings, **kwargs):  # type: ignore[no-untyped-def]
        tried.append(settings)
        return choose(*args, settings=settings, **kwargs)

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        costs.append(served_cost(*args, **kwargs))
        return costs[-1]

    monkeypatch.setattr("model.trainer.choose_neighbours", spy)
    monkeypatch.setattr("model.trainer.served_cost", counted)
    train(corpus_split[0], *preset("default", epochs=1, patience=1, min_docs_per_s=1.0))
    rate = costs[0].docs_per_s
    assert costs[0].votes_us > 0
    with caplog.at_level("INFO", logger="model.trainer"):
        neighbours = train(corpus_split[0], *preset("default", epochs=1, patience=1,
                                                    min_docs_per_s=rate * 1.0001)).neighbours
    assert costs[1] == costs[0]  # counted, not timed: the same model gives the same answer on every run
    assert tried == [SETTINGS, ()]
    assert neighbours is None or neighbours.votes_weight == 0
    assert f"under the floor of {rate * 1.0001:.0f} (--min-docs-per-s): not tried" in caplog.text
    with pytest.raises(ConfigError, match="min_docs_per_s"):
        preset("default", min_docs_per_s=-1.0)


def test_the_floor_s_answer_is_recorded_and_a_recorded_answer_is_not_counted_again(  # type: ignore[no-untyped-def]
        corpus_split, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    tried: list[tuple[tuple[int, float], ...]] = []  # the vote settings the trainer lets validation try

    def spy(*args, settings, **kwargs):  # type: ignore[no-untyped-def]
        tried.append(settings)
        return choose(*args, settings=settings, **kwargs)

    monkeypatch.setattr("model.trainer.choose_neighbours", spy)
    too_slow = train(corpus_split[0], *preset("default", epochs=1, patience=1, min_docs_per_s=1e12))
    assert too_slow.train_config.votes_affordable is False  # counted, and under the floor
    checkpoint.save(too_slow, tmp_path / "model")
    assert checkpoint.load(tmp_path / "model").train_config.votes_affordable is False

    def uncounted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a recorded answer must not be counted again")

    monkeypatch.setattr("model.trainer.served_cost", uncounted)
    inherited = train(corpus_split[0], *preset("default", epochs=1, patience=1, min_docs_per_s=1e12,
                                               votes_affordable=True))  # as a learner's round from a live model
    assert inherited.train_config.votes_affordable is True
    assert tried == [(), SETTINGS]


def test_the_paper_preset_and_the_flag_leave_votes_out(corpus_split) -> None:  # type: ignore[no-untyped-def]
    model_config, train_config = preset("default", epochs=2, patience=2, neighbours=False)
    assert train(corpus_split[0], model_config, train_config).neighbours is None
    assert preset("paper")[1].neighbours is False and preset("default")[1].neighbours is True


def test_prepare_builds_only_the_matrices_the_served_score_reads() -> None:
    centroids_only = Neighbours.index(ROWS, LABELS, k=2, power=1.0, share=0.5, max_doc_freq=1, centroids=0.5)
    centroids_only.prepare()
    assert "_centroid_columns" in vars(centroids_only) and "_columns" not in vars(centroids_only)
    votes_only = Neighbours.index(ROWS, LABELS, k=2, power=1.0, share=0.5, max_doc_freq=1)
    votes_only.prepare()
    assert "_columns" in vars(votes_only) and "_centroid_columns" not in vars(votes_only)


def test_a_large_validation_split_chooses_the_weights_on_its_sample(corpus_split,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[int]] = []  # validation rows the choice was given, per fold

    def spy(folds, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append([fold.scores.shape[0] for fold in folds])
        return choose(folds, *args, **kwargs)

    monkeypatch.setattr("model.trainer.choose_neighbours", spy)
    configs = preset("default", epochs=1, patience=1, min_docs_per_s=0, min_valid=0)
    train(corpus_split[0], *configs)  # a small split: every row
    train(corpus_split[0], *preset("default", epochs=1, patience=1, min_docs_per_s=0, cv_min_docs=0))  # every fold
    monkeypatch.setattr("model.trainer.choice_rows", lambda *args: np.array([0, 2, 4, 6, 8]))
    train(corpus_split[0], *configs)
    assert len(corpus_split[0]) == 300  # so 10% is 30 documents, and three folds hold out 100 each
    assert seen == [[30], [100, 100, 100], [5]]


def test_choice_rows_keep_what_fits_at_least_a_thousand() -> None:
    assert choice_rows(2_000, 10, 0, entries=20_000) is None  # 20,000 entries fit exactly
    rows = choice_rows(2_000, 10, 0, entries=19_999)
    assert rows is not None and rows.size == 1_999 and len(set(rows.tolist())) == 1_999
    assert choice_rows(5_000, 1_000, 0, entries=10).size == 1_000  # the floor of 1,000 rows
    assert np.array_equal(choice_rows(5_000, 1_000, 7, entries=10), choice_rows(5_000, 1_000, 7, entries=10))
