"""One contract battery over every head and ablation: shapes, save→load, determinism, no mutation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model import checkpoint
from model.checkpoint import TrainedModel
from model.config import ModelConfig
from model.data import Corpus, label_matrix
from model.loss import margin_ranking_loss
from model.rank_ae import RankAE, SparseBatch, labels_batch
from model.tagger import Tagger
from model.trainer import build_model, train
from tests.conftest import tiny_configs

VARIANTS = {
    "default": {},
    "paper": {"attention": True, "pooling": "mean", "tag_head": False},
    "no-tag-head": {"tag_head": False},
    "margin-tag-head": {"tag_head_loss": "margin"},
    "margin-sum": {"margin_reduction": "sum"},
    "bce-ae": {"loss": "bce"},
    "pmi-init": {"label_init": "pmi"},
    "pmi-cosine": {"head": "pmi-cosine"},
    "mean-pooling": {"pooling": "mean", "word_dropout": 0.2},
    "direct-term": {"lambda_direct": 0.5},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def trained(request: pytest.FixtureRequest, corpus_split: tuple[Corpus, Corpus]) -> TrainedModel:
    model_config, train_config = tiny_configs(**VARIANTS[request.param])
    return train(corpus_split[0], model_config, train_config)


def test_scores_have_one_column_per_label(trained: TrainedModel, corpus_split: tuple[Corpus, Corpus]) -> None:
    rows = trained.featurizer.transform(corpus_split[1].texts[:7])
    scores = trained.model.scores(SparseBatch.from_csr(rows))
    assert scores.shape == (7, len(trained.label_names))
    assert torch.isfinite(scores).all()


def test_predict_returns_k_ranked_known_labels(trained: TrainedModel, corpus_split: tuple[Corpus, Corpus]) -> None:
    tagger = Tagger.from_trained(trained)
    tags = tagger.predict(corpus_split[1].texts[:5], k=3)
    assert [len(doc) for doc in tags] == [3] * 5
    for doc in tags:
        scores = [score for _, score in doc]
        assert scores == sorted(scores, reverse=True)
        assert {name for name, _ in doc} <= set(trained.label_names)


def test_save_then_load_predicts_identically(trained: TrainedModel, corpus_split: tuple[Corpus, Corpus],
                                             tmp_path: Path) -> None:
    before = Tagger.from_trained(trained).predict(corpus_split[1].texts, 5)
    version = checkpoint.save(trained, tmp_path / "model")
    loaded = Tagger.load(tmp_path / "model", "cpu")
    assert loaded.version == version
    assert loaded.predict(corpus_split[1].texts, 5) == before


def test_training_is_seeded(trained: TrainedModel, corpus_split: tuple[Corpus, Corpus]) -> None:
    again = train(corpus_split[0], trained.model.config, trained.train_config)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


def test_inputs_are_not_mutated(trained: TrainedModel, corpus_split: tuple[Corpus, Corpus]) -> None:
    rows = trained.featurizer.transform(corpus_split[1].texts[:9])
    copy = rows.copy()
    Tagger.from_trained(trained).topk(rows, 3)
    assert (rows != copy).nnz == 0
    assert np.array_equal(rows.indptr, copy.indptr)


def test_an_empty_document_still_gets_tags(trained: TrainedModel) -> None:
    tags = Tagger.from_trained(trained).predict(["", "zzzz qqqq"], k=2)
    assert [len(doc) for doc in tags] == [2, 2]


def test_state_dict_round_trip_rebuilds_the_same_model(trained: TrainedModel) -> None:
    twin = RankAE(trained.model.config)
    twin.load_state_dict(trained.model.state_dict())
    rows = SparseBatch.from_csr(trained.featurizer.transform(["a b c"]))
    assert torch.equal(twin.eval().scores(rows), trained.model.scores(rows))


def test_direct_term_adds_the_weighted_loss_on_decoded_features(corpus_split: tuple[Corpus, Corpus]) -> None:
    trained = train(corpus_split[0], *tiny_configs(lambda_direct=0.0))
    model = trained.model.eval()  # eval: no dropout, so every part is deterministic
    rows = trained.featurizer.transform(corpus_split[1].inputs[:8])
    labels = label_matrix(corpus_split[1].labels[:8], trained.label_names)
    label_ids, targets = labels_batch(labels)
    batch = SparseBatch.from_csr(rows)
    paper = model.loss(batch, label_ids, targets)
    assert "direct" not in paper
    model.config = dataclasses.replace(model.config, lambda_direct=2.0)
    parts = model.loss(batch, label_ids, targets)
    direct = margin_ranking_loss(model.decoder(model.features(batch)), targets, model.config.margin,
                                 model.config.margin_reduction)
    assert parts["direct"].item() == pytest.approx(direct.item())
    assert parts["loss"].item() == pytest.approx(paper["loss"].item() + 2.0 * direct.item())


def test_bce_decoder_starts_at_the_label_log_odds() -> None:
    config = ModelConfig(n_features=5, n_labels=3, embed_dim=8, latent_dim=4, label_hidden=6, loss="bce")
    model = RankAE(config)
    model.init_label_prior(np.array([0.5, 0.2, 0.0]))
    # log(p / (1 - p)): 0 for 0.5, log(0.25) for 0.2; an unseen label is clamped to p = 1e-6
    expected = [0.0, float(np.log(0.25)), float(np.log(1e-6 / (1 - 1e-6)))]
    assert model.decoder.second.bias.tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("loss", "starts_at_prior"), [("bce", True), ("margin", False)])
def test_training_starts_bce_at_the_priors_and_leaves_margin_alone(loss: str, starts_at_prior: bool) -> None:
    y = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]]))  # frequencies 3/4, 1/4, 0
    config = ModelConfig(n_features=5, n_labels=3, embed_dim=8, latent_dim=4, label_hidden=6, loss=loss)
    bias = build_model(config, y, seed=0).decoder.second.bias.tolist()
    prior = [float(np.log(3.0)), float(np.log(1 / 3)), float(np.log(1e-6 / (1 - 1e-6)))]
    assert (bias == pytest.approx(prior, rel=1e-5)) == starts_at_prior


def test_scores_blend_the_decoder_and_the_tag_head_at_the_chosen_share(
        corpus_split: tuple[Corpus, Corpus]) -> None:
    trained = train(corpus_split[0], *tiny_configs())
    model = trained.model.eval()
    assert 0.0 <= model.config.ae_share <= 1.0
    batch = SparseBatch.from_csr(trained.featurizer.transform(corpus_split[1].texts[:5]))
    with torch.inference_mode():
        ae = torch.sigmoid(model.decoder(model.features(batch)))
        tags = torch.sigmoid(model.tag_head(model.features.pooled(batch)))
        for share in (0.0, 0.3, 1.0):
            model.config = dataclasses.replace(model.config, ae_share=share)
            assert torch.allclose(model.scores(batch), share * ae + (1 - share) * tags, atol=1e-6)


def test_the_tag_head_starts_at_the_label_log_odds_and_trains_with_the_autoencoder() -> None:
    config = ModelConfig(n_features=5, n_labels=3, embed_dim=8, latent_dim=4, label_hidden=6)
    model = RankAE(config)
    decoder_bias = model.decoder.second.bias.detach().clone()
    model.init_label_prior(np.array([0.5, 0.2, 0.0]))
    bias = model.tag_head.out.bias.detach()
    assert bias[0].item() == pytest.approx(0.0, abs=1e-6)
    assert bias[1].item() == pytest.approx(np.log(0.2 / 0.8), abs=1e-5)
    assert torch.equal(model.decoder.second.bias.detach(), decoder_bias)  # the margin decoder: untouched
    rows = sp.csr_matrix(np.array([[1.0, 0, 0, 0.5, 0], [0, 1.0, 0, 0, 0]], dtype=np.float32))
    labels, targets = labels_batch(sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)))
    parts = model.loss(SparseBatch.from_csr(rows), labels, targets)
    assert parts["loss"].item() == pytest.approx(
        (parts["latent"] + config.lambda_ae * parts["ae"] + parts["tags"]).item(), rel=1e-6)


def test_checkpoint_configs_older_than_the_tag_head_load_as_they_were_trained() -> None:
    legacy = {k: v for k, v in ModelConfig().to_dict().items()
              if k not in ("tag_head", "margin_reduction", "ae_share")}
    config = ModelConfig.from_dict(legacy)
    assert (config.tag_head, config.margin_reduction, config.ae_share) == (False, "sum", 1.0)
    assert RankAE(dataclasses.replace(config, n_features=4, n_labels=3)).tag_head is None
