"""Training reaches a clear quality bar on generated data; early stopping; label noise; configs."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import scipy.sparse as sp

from model.config import ModelConfig, TrainConfig, preset
from model.data import Corpus, hash_split, label_matrix
from model.device import resolve_device
from model.epochs import diverged, frequency_baseline
from model.errors import ConfigError, DataError, ModelError
from model.metrics import evaluate
from model.noise import add_label_noise, parse_noise
from model.rank_ae import predict_topk
from model.synthetic import generate_corpus
from model.tagger import Tagger
from model.trainer import split_validation, train, validation_folds
from tests.conftest import TINY_MODEL, TINY_TRAIN, tiny_configs
from tests.support.fixtures import unspaced_corpus


@pytest.mark.parametrize("variant", [{}, {"head": "pmi-cosine"}])
def test_training_beats_chance_by_far(corpus_split: tuple[Corpus, Corpus], variant: dict[str, object]) -> None:
    model_config, _ = tiny_configs(embed_dim=64, latent_dim=32, label_hidden=64, **variant)
    trained = train(corpus_split[0], model_config, TrainConfig(epochs=12, patience=12, min_df=1))
    scores = Tagger.from_trained(trained, {"label_counts": trained.label_counts, "n_train": trained.n_train}
                                 ).evaluate(corpus_split[1])
    # 12 labels: guessing scores P@1 ≈ 0.08; a model that learns the topic words scores far higher
    assert scores["p@1"] >= 0.85, scores
    assert scores["ndcg@3"] >= 0.75, scores
    assert 0.0 < scores["psp@1"] <= 1.0


def test_text_without_spaces_trains_a_tagger() -> None:
    corpus = unspaced_corpus(600)
    train_corpus, test_corpus = corpus.subset(range(500)), corpus.subset(range(500, 600))
    model_config, _ = tiny_configs(embed_dim=64, latent_dim=32, label_hidden=64)
    trained = train(train_corpus, model_config, TrainConfig(epochs=8, patience=8))
    scores = Tagger.from_trained(trained).evaluate(test_corpus)
    assert scores["p@1"] >= 0.9, scores  # three balanced labels: guessing scores about 0.33


def test_dense_label_sets_train_well_past_the_frequency_baseline() -> None:
    # 20 of 100 labels per document (Delicious has 19 of 983), a skewed label distribution: ranking every
    # document's labels by frequency already scores P@1 ≈ 0.59; the default model must beat it clearly.
    corpus = generate_corpus(1500, 100, seed=2, labels_per_doc=20, doc_length=(60, 120))
    train_corpus, test = hash_split(corpus, 0.2, seed=0)
    model_config, train_config = preset("default", **TINY_TRAIN, embed_dim=128, latent_dim=32, label_hidden=64,
                                        dropout=0.1)
    trained = train(train_corpus, model_config, dataclasses.replace(train_config, epochs=10, patience=10))
    y_test = label_matrix(test.labels, trained.label_names)
    scores = Tagger.from_trained(trained).evaluate(test)
    baseline = evaluate(np.tile(np.arange(5), (len(test), 1)), y_test)
    assert {len(labels) for labels in corpus.labels} == {20}
    assert scores["p@1"] >= baseline["p@1"] + 0.15, (scores, baseline)
    assert scores["p@5"] >= baseline["p@5"] + 0.25, (scores, baseline)


def test_training_that_cannot_learn_stops_with_an_error_saying_what_to_try(
        caplog: pytest.LogCaptureFixture) -> None:
    # The paper's configuration with Eq. 3-4's summed margin loss on a dense label set: what collapsed on
    # Delicious. The trainer restarts from its best state at half the rate, then refuses to hand back a
    # model that ranks labels worse than their frequency does.
    corpus = generate_corpus(1500, 100, seed=2, labels_per_doc=20, doc_length=(60, 120))
    model_config, train_config = preset("paper", **TINY_TRAIN, **TINY_MODEL, margin_reduction="sum")
    with caplog.at_level(logging.WARNING, logger="model.epochs"), \
            pytest.raises(ModelError, match=r"training failed.*most frequent labels.*--lr"):
        train(corpus, model_config, dataclasses.replace(train_config, epochs=30, patience=3))


def test_divergence_is_a_non_finite_loss_or_a_fall_below_the_baseline_after_beating_it() -> None:
    assert diverged(float("nan"), 0.9, 0.3, 0.9)
    assert diverged(1.0, 0.2, 0.3, 0.8)
    assert not diverged(1.0, 0.2, 0.3, 0.25)  # never beat the baseline yet: still learning, not diverged
    assert not diverged(1.0, 0.5, 0.3, 0.8)  # worse than the best, above the baseline: patience's job


def test_frequency_baseline_ranks_the_most_frequent_label_first() -> None:
    y = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32))
    assert frequency_baseline(y) == pytest.approx(0.5)  # label 0 is in 2 of 4 documents


def test_presets_name_the_default_and_the_paper_configuration() -> None:
    assert preset("default") == (ModelConfig(), TrainConfig())
    paper, paper_train = preset("paper", epochs=3)
    assert (paper.embed_dim, paper.attention, paper.pooling, paper.tag_head) == (100, True, "mean", False)
    assert (paper_train.epochs, paper_train.lr) == (3, 2e-3)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("fast")
    with pytest.raises(ConfigError, match="unknown setting"):
        preset("paper", bogus=1)


def test_early_stopping_keeps_the_best_epoch(corpus_split: tuple[Corpus, Corpus]) -> None:
    model_config, _ = tiny_configs()
    trained = train(corpus_split[0], model_config, TrainConfig(epochs=6, patience=2, min_df=1, lr=0.05))
    best = max(entry["valid_p@1"] for entry in trained.history)
    assert trained.metrics["p@1"] == pytest.approx(best)
    assert len(trained.history) <= 6


def test_the_log_names_the_epoch_kept_and_the_networks_blend(corpus_split: tuple[Corpus, Corpus],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    model_config, _ = tiny_configs()
    with caplog.at_level(logging.INFO, logger="model.trainer"):
        trained = train(corpus_split[0], model_config, TrainConfig(epochs=3, patience=3, min_df=1, lr=0.05))
    best = max(trained.history, key=lambda entry: entry["valid_p@1"])
    share = trained.model.config.ae_share
    assert share == best["ae_share"]
    kept = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kept epoch")]
    assert kept == [f"kept epoch {best['epoch']} (validation P@1 {100 * best['valid_p@1']:.2f}%); the network's score: "
                    f"decoder share {share:.1f}, tag head {1 - share:.1f}"]


def test_a_run_without_a_terminal_logs_one_line_per_epoch(corpus_split: tuple[Corpus, Corpus],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    model_config, _ = tiny_configs()
    with caplog.at_level(logging.INFO, logger="model.epochs"):
        train(corpus_split[0], model_config, TrainConfig(epochs=2, patience=2), progress="log")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1 of at most 2", "epoch 2 of at most 2"]
    assert "validation P@1" in lines[0] and "(best" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="model.epochs"):
        train(corpus_split[0], model_config, TrainConfig(epochs=2, patience=2))  # "off": the learner's rounds
    assert not [r for r in caplog.records if r.getMessage().startswith("epoch ")]


def test_a_time_budget_stops_training_after_the_epoch_that_leaves_no_time(corpus_split: tuple[Corpus, Corpus]) -> None:
    model_config, _ = tiny_configs()
    # any epoch takes longer than a microsecond: the first one already leaves no time for a second
    trained = train(corpus_split[0], model_config, TrainConfig(epochs=20, patience=20, min_df=1, lr=0.05,
                                                               time_budget_s=1e-6))
    assert len(trained.history) == 1
    with pytest.raises(ConfigError, match="time_budget_s"):
        TrainConfig(time_budget_s=-1.0)


def test_a_refit_that_would_overrun_the_time_budget_is_left_out(corpus_split: tuple[Corpus, Corpus]) -> None:
    from model.trainer import feedback_corpora

    model_config, train_config = tiny_configs()
    n = len(corpus_split[0])
    roomy = train(corpus_split[0], model_config, dataclasses.replace(train_config, refit=True, time_budget_s=3600))
    assert roomy.n_train == n and roomy.train_config.refit and roomy.before_refit is not None
    # the first epoch already spends the budget: no time left for the refit
    tight = train(corpus_split[0], model_config, dataclasses.replace(train_config, refit=True, time_budget_s=1e-6))
    assert len(tight.history) == 1 and tight.n_train == n - round(0.1 * n)
    assert not tight.train_config.refit and tight.before_refit is None  # recorded with the model...
    assert set(feedback_corpora(corpus_split[0], tight.train_config)) == {"heldout", "replay"}  # ...and its split


def test_refit_retrains_on_every_training_document(corpus_split: tuple[Corpus, Corpus]) -> None:
    model_config, train_config = tiny_configs()
    plain = train(corpus_split[0], model_config, train_config)
    refit = train(corpus_split[0], model_config, dataclasses.replace(train_config, refit=True))
    assert refit.n_train == len(corpus_split[0]) > plain.n_train
    assert refit.metrics == plain.metrics  # validation figures come from the run that chose the epochs
    rows = refit.featurizer.transform(corpus_split[1].inputs)
    _, refit_scores = predict_topk(refit.model, rows, 3)
    _, plain_scores = predict_topk(plain.model, plain.featurizer.transform(corpus_split[1].inputs), 3)
    assert not np.allclose(refit_scores, plain_scores)  # a different model, not the chosen one re-saved


def test_a_given_validation_corpus_leaves_nothing_to_refit(corpus_split: tuple[Corpus, Corpus],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    model_config, train_config = tiny_configs()
    with caplog.at_level(logging.INFO, logger="model"):
        given = train(corpus_split[0], model_config, dataclasses.replace(train_config, refit=True),
                      valid_corpus=corpus_split[1])
    assert given.n_train == len(corpus_split[0])
    assert [r.getMessage().startswith("training ") for r in caplog.records].count(True) == 1  # trained once
    assert "refit on all" not in caplog.text


def test_a_small_corpus_holds_out_at_least_min_valid_then_trains_on_every_document(
        corpus_split: tuple[Corpus, Corpus]) -> None:
    model_config, tiny = tiny_configs()
    floor = dataclasses.replace(tiny, min_valid=100)  # 10% of these 730 documents would be 73
    kept = train(corpus_split[0], model_config, floor)  # tiny_configs: no refit
    assert kept.n_train == 730 - 100
    refit = train(corpus_split[0], model_config, dataclasses.replace(floor, refit=True))
    assert refit.n_train == 730
    assert refit.metrics == kept.metrics  # chosen on the same 100 documents, by the same seeded run
    given = train(corpus_split[0], model_config, floor, valid_corpus=corpus_split[1])
    assert given.n_train == 730  # a validation corpus given: nothing held out


def test_the_validation_floor_is_checked() -> None:
    with pytest.raises(ConfigError, match="min_valid"):
        TrainConfig(min_valid=-1)


def test_labels_are_ordered_by_frequency(corpus_split: tuple[Corpus, Corpus]) -> None:
    trained = train(corpus_split[0], *tiny_configs())
    counts = trained.label_counts
    assert counts == sorted(counts, reverse=True)
    assert trained.n_train == len(corpus_split[0]) - round(0.1 * len(corpus_split[0]))


def test_corpus_without_labels_is_refused() -> None:
    corpus = Corpus([f"d{i}" for i in range(20)], [[] for _ in range(20)], texts=["some words here"] * 20)
    with pytest.raises(DataError, match="no label"):
        train(corpus, *tiny_configs())


Y = sp.csr_matrix((np.random.default_rng(0).random((2000, 30)) < 0.1).astype(np.float32))


def test_missing_noise_drops_the_given_share_of_positives() -> None:
    noisy = add_label_noise(Y, "missing:0.3", seed=1)
    assert (noisy - Y).max() <= 0  # only removals
    assert noisy.nnz / Y.nnz == pytest.approx(0.7, abs=0.03)


def test_flip_noise_removes_and_adds_about_equally() -> None:
    noisy = add_label_noise(Y, "flip:0.3", seed=1)
    removed = (Y - Y.multiply(noisy)).nnz
    added = (noisy - noisy.multiply(Y)).nnz
    assert removed / Y.nnz == pytest.approx(0.3, abs=0.03)
    assert added / Y.nnz == pytest.approx(0.3 * 27 / 30, abs=0.04)  # a random label is already true 10% of the time


def test_noise_is_seeded_and_optional() -> None:
    assert (add_label_noise(Y, "flip:0.2", 4) != add_label_noise(Y, "flip:0.2", 4)).nnz == 0
    assert add_label_noise(Y, "", 4) is Y
    assert parse_noise("missing:0.25") == ("missing", 0.25)
    for bad in ("drop:0.1", "missing:x", "flip:1.5"):
        with pytest.raises(ConfigError):
            parse_noise(bad)


@pytest.mark.parametrize("bad", [
    {"head": "tree"}, {"loss": "hinge"}, {"embed_dim": 30, "reduction": 4}, {"dropout": 1.0},
    {"pooling": "max"}, {"label_init": "glove"}, {"lambda_direct": -1.0},
])
def test_invalid_model_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_config_round_trips_and_rejects_unknown_fields() -> None:
    config = ModelConfig(embed_dim=64)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"epochs": 3, "bogus": 1})
    # a model saved before refit became the default names a retired field: it still loads
    assert TrainConfig.from_dict({"epochs": 3, "refit": False, "refit_small": True}) == TrainConfig(epochs=3,
                                                                                                   refit=False)


def test_device_defaults_to_cuda_only_when_present() -> None:
    import torch

    assert resolve_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"


def test_validation_folds_partition_the_corpus_and_the_first_holds_out_what_one_split_would() -> None:
    corpus = Corpus([f"d{i}" for i in range(10)], [["a"]] * 10)
    config = TrainConfig(cv_folds=3)
    folds = validation_folds(corpus, config)
    assert [len(held) for _, held in folds] == [3, 4, 3]  # runs of 10/3 documents, rounded
    held_ids = [set(held.ids) for _, held in folds]
    assert set().union(*held_ids) == set(corpus.ids) and sum(map(len, held_ids)) == 10  # each document once
    assert all(set(fit.ids) == set(corpus.ids) - held for (fit, _), held in zip(folds, held_ids, strict=True))
    _, one_split = split_validation(corpus, 0.2, config.seed)
    assert set(one_split.ids) <= held_ids[0]


def test_a_small_corpus_chooses_its_epoch_on_every_document_by_cross_validation(
        corpus_split: tuple[Corpus, Corpus], caplog: pytest.LogCaptureFixture) -> None:
    from model.trainer import feedback_corpora

    model_config, tiny = tiny_configs()
    config = dataclasses.replace(tiny, refit=True, cv_folds=3, cv_min_docs=0, cv_max_docs=1000)
    with caplog.at_level(logging.INFO, logger="model.trainer"):
        trained = train(corpus_split[0], model_config, config)
    assert "730 training documents: the epoch count and blends chosen by 3-fold cross-validation" in caplog.text
    assert trained.n_train == 730  # refit on all of them
    # each epoch judged on all 730 documents (folds of 243, 244 and 243): P@1 is a count of 730
    assert all(abs(730 * e["valid_p@1"] - round(730 * e["valid_p@1"])) < 1e-6 for e in trained.history)
    # the learner's held-out set is one split's (73 documents: min_valid 0), within the first fold's validation
    # documents and ranked by that fold's network before the refit
    corpora = feedback_corpora(corpus_split[0], trained.train_config)
    assert trained.before_refit is not None and trained.before_refit.ids == tuple(corpora["refit_heldout"].ids)
    assert len(corpora["refit_heldout"]) == 73
    assert set(corpora["refit_heldout"].ids) <= set(validation_folds(corpus_split[0], config)[0][1].ids)
    # no time for the refit: the first fold's network is served, and the saved split is one it never trained on
    tight = train(corpus_split[0], model_config, dataclasses.replace(config, time_budget_s=1e-6))
    assert not tight.train_config.refit and tight.n_train == 730 - 243
    heldout = feedback_corpora(corpus_split[0], tight.train_config)["heldout"]
    assert heldout.ids == corpora["refit_heldout"].ids
