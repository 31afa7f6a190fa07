"""Shared fixtures: a small generated corpus and a model trained on it once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.config import ModelConfig, TrainConfig
from model.data import Corpus, hash_split
from model.synthetic import generate_corpus

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Small and fast: every variant trains on this in a few seconds on 2 CPU cores.
TINY_MODEL = dict(embed_dim=32, latent_dim=16, label_hidden=32, dropout=0.1)
# min_valid 0 and no refit: each run trains once on a 10% split; the floor and the refit have tests of their own
TINY_TRAIN = dict(epochs=4, batch_size=32, patience=4, min_df=1, min_valid=0, refit=False)


@pytest.fixture(scope="session")
def corpus_split() -> tuple[Corpus, Corpus]:
    """(train, test) of a generated 12-label corpus."""
    return hash_split(generate_corpus(900, 12, seed=5), 0.2, seed=0)


def tiny_configs(**model_overrides: object) -> tuple[ModelConfig, TrainConfig]:
    """Small model and training configs, with overrides for the model."""
    return ModelConfig(**{**TINY_MODEL, **model_overrides}), TrainConfig(**TINY_TRAIN)
