"""The layer over a text encoder's vector served beside the tf-idf network: its blend, its training, the share
chosen on validation, its checkpoint file, and the trainer's choice between the two encoder models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model import checkpoint
from model.config import TrainConfig
from model.data import Corpus, label_matrix
from model.epochs import frequency_baseline
from model.errors import CheckpointError, ConfigError
from model.rank_ae import Partner, RankAE, served_scores
from model.synthetic import generate_corpus
from model.tagger import Tagger
from model.trainer import train
from model.vector_head import VectorHead, choose_share, fit_layer
from tests.conftest import tiny_configs
from tests.unit.test_encoder import needs_minilm

# Two labels read off a 2-d vector: label 0 where e = (1, 0), label 1 where e = (0, 1).
HEAD = VectorHead(torch.tensor([[4.0, -4.0], [-4.0, 4.0]]), torch.zeros(2), share=0.5)


def test_the_served_score_is_the_share_weighted_blend() -> None:
    network = torch.tensor([[0.2, 0.6]])
    layer = torch.sigmoid(torch.tensor([[4.0, -4.0]]))  # W e + b for e = (1, 0)
    served = HEAD.blend(network, np.array([[1.0, 0.0]]))
    assert torch.allclose(served, 0.5 * network + 0.5 * layer)
    assert served.argmax().item() == 0  # 0.1 + 0.491 against 0.3 + 0.009


def test_rows_split_into_the_words_and_the_vector_that_ends_them() -> None:
    rows = sp.csr_matrix(np.array([[0.5, 0.0, 0.1, 1.0, 0.0], [0.0, 0.3, 0.0, 0.0, 1.0]], dtype=np.float32))
    words, vectors = HEAD.split(rows)
    assert words.shape == (2, 3) and words.toarray()[1].tolist() == pytest.approx([0.0, 0.3, 0.0])
    assert vectors.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_the_share_is_chosen_on_validation_and_ties_keep_the_network() -> None:
    y = sp.csr_matrix(np.array([[1, 0], [0, 1]]))
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]])
    # The network ranks the first document wrongly by a margin of 0.3: the layer (0.982 vs 0.018 for each
    # document's own label) must outweigh it, share·0.3 < (1 − share)·0.964, so shares up to 0.7 get both right.
    wrong = np.array([[0.3, 0.6], [0.1, 0.9]], dtype=np.float32)
    head, metrics = choose_share(HEAD, wrong, vectors, y)
    assert head.share == 0.7 and metrics["p@1"] == 1.0
    # A network that is right already keeps everything: 1.0 ties with every share and is the largest.
    right = np.array([[0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
    assert choose_share(HEAD, right, vectors, y)[0].share == 1.0


def test_the_layer_learns_labels_the_vector_separates() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    e = np.eye(3)[labels] + 0.1 * rng.standard_normal((300, 3))
    y = sp.csr_matrix(np.eye(3)[labels])
    head, epochs = fit_layer(e[:240], y[:240], seed=0, e_valid=e[240:], y_valid=y[240:])
    assert 1 <= epochs <= 60
    assert (head.scores(e[240:]).argmax(dim=1).numpy() == labels[240:]).mean() == 1.0
    again, _ = fit_layer(e[:240], y[:240], seed=0, epochs=epochs)  # the refit's form: a fixed epoch count
    assert torch.allclose(again.weight, head.weight)


def test_a_network_reads_only_its_own_columns() -> None:
    model_config, _ = tiny_configs(n_features=3, n_labels=2)
    model = RankAE(model_config)
    rows = sp.csr_matrix(np.array([[0.5, 0.0, 0.1, 1.0, 0.0]], dtype=np.float32))
    batch = model.batch(rows)
    assert batch.ids.tolist() == [0, 2] and batch.dense is None


def test_an_unknown_encoder_use_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="encoder_use must be one of"):
        TrainConfig(encoder_use="both")


# --- with the real encoder -----------------------------------------------------------------------------------------

def _trained(corpus: Corpus, use: str) -> checkpoint.TrainedModel:
    model_config, train_config = tiny_configs()
    return train(corpus, model_config, dataclasses.replace(train_config, encoder="minilm", encoder_use=use))


@pytest.fixture(scope="module")
def remembered() -> Iterator[object]:
    """The encoder keeping its vectors, so the module's several trainings encode each document once."""
    from model.encoder import load_encoder

    encoder = load_encoder("minilm", "cpu")
    encoder.remember(5000)
    yield encoder
    encoder.remember(0)


@pytest.fixture(scope="module")
def layer_model(remembered: object, corpus_split: tuple[Corpus, Corpus],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer") / "model"
    checkpoint.save(_trained(corpus_split[0], "layer"), out)
    return out


@needs_minilm
def test_the_layer_model_learns_and_round_trips(layer_model: Path, corpus_split: tuple[Corpus, Corpus]) -> None:
    tagger = Tagger.load(layer_model, "cpu")
    assert tagger.model.config.dense_features == 0 and tagger.featurizer.dense_features == 384
    assert tagger.head is not None and tuple(tagger.head.weight.shape) == (len(tagger.label_names), 384)
    test = corpus_split[1]
    baseline = frequency_baseline(label_matrix(test.labels, tagger.label_names))
    assert tagger.evaluate(test)["p@1"] > baseline + 0.2
    assert Tagger.load(layer_model, "cpu").predict(test.texts[:4], k=3) == tagger.predict(test.texts[:4], k=3)


@needs_minilm
def test_a_layer_that_does_not_fit_the_labels_is_refused(layer_model: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "model"
    shutil.copytree(layer_model, damaged)
    with np.load(damaged / checkpoint.HEAD) as npz:
        arrays = dict(npz)
    with (damaged / checkpoint.HEAD).open("wb") as out:
        np.savez(out, **{**arrays, "bias": arrays["bias"][:-1]})
    with pytest.raises(CheckpointError, match="encoder-vector layer has weight"):
        checkpoint.load(damaged)
    (damaged / checkpoint.HEAD).unlink()  # the network alone cannot read what the featurizer gives
    with pytest.raises(CheckpointError, match=r"the network reads 0 and vector_head\.npz is absent"):
        checkpoint.load(damaged)


@pytest.fixture(scope="module")
def forms(remembered: object, corpus_split: tuple[Corpus, Corpus]) -> dict[str, checkpoint.TrainedModel]:
    """The three things ``encoder_use`` asks for, trained on the same split."""
    return {use: _trained(corpus_split[0], use) for use in ("network", "layer", "choose")}


@needs_minilm
def test_the_trainer_keeps_the_best_of_the_two_forms_and_their_blend(forms: dict[str, checkpoint.TrainedModel]) \
        -> None:
    chosen = forms["choose"]
    # The blend's weights include 0 and 1, each form alone: what is kept is at least as good as either.
    assert chosen.metrics["p@1"] >= max(forms["network"].metrics["p@1"], forms["layer"].metrics["p@1"])
    if chosen.partner is None:  # one form alone, recorded so that a learner's round trains that one
        kept = chosen.train_config.encoder_use
        assert kept in ("network", "layer") and chosen.metrics == forms[kept].metrics
        assert (chosen.head is not None) == (kept == "layer")
    else:
        assert 0.0 < chosen.partner.weight < 1.0 and chosen.train_config.encoder_use == "choose"
        assert chosen.head is not None and chosen.partner.model.config.dense_features == 384


def _paired(forms: dict[str, checkpoint.TrainedModel], weight: float) -> checkpoint.TrainedModel:
    read = forms["network"]
    return dataclasses.replace(forms["layer"], partner=Partner(read.model, read.neighbours, weight))


@needs_minilm
def test_two_forms_served_together_blend_their_scores_and_round_trip(forms: dict[str, checkpoint.TrainedModel],
                                                                     corpus_split: tuple[Corpus, Corpus],
                                                                     tmp_path: Path) -> None:
    paired = _paired(forms, 0.25)
    rows = paired.featurizer.transform(corpus_split[1].texts[:8])
    with torch.inference_mode():
        alone = {use: served_scores(forms[use].model, rows, "cpu", forms[use].neighbours, forms[use].head)
                 for use in ("network", "layer")}
        both = served_scores(paired.model, rows, "cpu", paired.neighbours, paired.head, paired.partner)
    assert torch.allclose(both, 0.75 * alone["layer"] + 0.25 * alone["network"], atol=1e-6)
    checkpoint.save(paired, tmp_path / "model")
    loaded = Tagger.load(tmp_path / "model", "cpu")
    assert loaded.partner is not None and loaded.partner.weight == 0.25
    texts = corpus_split[1].texts[:8]
    assert loaded.predict(texts, k=3) == Tagger.from_trained(paired).predict(texts, k=3)


@needs_minilm
def test_a_partner_the_checkpoint_cannot_serve_is_refused(forms: dict[str, checkpoint.TrainedModel],
                                                          tmp_path: Path) -> None:
    checkpoint.save(_paired(forms, 0.5), tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["partner"]["weight"] = 1.5
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="names a partner network"):
        checkpoint.load(tmp_path / "model")
    shutil.rmtree(tmp_path / "model" / checkpoint.PARTNER)
    config["partner"]["weight"] = 0.5
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="must hold it"):
        checkpoint.load(tmp_path / "model")


@needs_minilm
def test_a_fine_tuning_round_trains_the_network_on_its_own_columns(layer_model: Path,
                                                                   corpus_split: tuple[Corpus, Corpus]) -> None:
    from model.finetune import FineTuneConfig, fine_tune

    tagger = Tagger.load(layer_model, "cpu")
    docs = corpus_split[1]
    rows, y = tagger.features(docs.texts or []), label_matrix(docs.labels, tagger.label_names)
    assert rows.shape[1] == tagger.model.config.n_features + 384  # the words, then the layer's vector
    tuned = fine_tune(tagger.model, rows, y, rows[:0], y[:0], FineTuneConfig(epochs=1))
    assert not torch.equal(tuned.features.embedding.weight, tagger.model.features.embedding.weight)


@needs_minilm
def test_a_refit_keeps_the_layer_form_over_every_document(remembered: object,
                                                          corpus_split: tuple[Corpus, Corpus]) -> None:
    model_config, train_config = tiny_configs()
    trained = train(corpus_split[0], model_config, dataclasses.replace(train_config, encoder="minilm",
                                                                       encoder_use="layer", refit=True))
    assert trained.n_train == len(corpus_split[0]) and trained.head is not None
    assert trained.model.config.dense_features == 0 and 0.0 <= trained.head.share <= 1.0
    test = corpus_split[1]
    baseline = frequency_baseline(label_matrix(test.labels, trained.label_names))
    assert Tagger.from_trained(trained).evaluate(test)["p@1"] > baseline + 0.2


@needs_minilm
def test_a_refit_encodes_each_training_document_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from model.encoder import load_encoder

    encoder = load_encoder("minilm", "cpu")
    before = encoder.keeps
    encoder.remember(0)  # this module's fixture keeps vectors too: here only the trainer's memory may count
    embedded: list[int] = []
    embed = encoder.backend.embed
    monkeypatch.setattr(encoder.backend, "embed", lambda ids, mask: embedded.append(len(ids)) or embed(ids, mask))
    corpus = generate_corpus(240, 6, seed=11)
    assert corpus.texts is not None and len(set(corpus.texts)) == 240
    model_config, train_config = tiny_configs()
    trained = train(corpus, model_config, dataclasses.replace(train_config, encoder="minilm", encoder_use="network",
                                                              refit=True), device="cpu")
    assert trained.n_train == 240
    # without the memory: the fit split, the validation split, then all 240 again (480)
    assert sum(embedded) == 240 and encoder.keeps == 0
    encoder.remember(before)
