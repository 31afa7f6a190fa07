"""Pieces the test folders' fixtures share: a tiny trained model, and an emptied Redis database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.synthetic import generate_corpus
from model.trainer import train

__all__ = ["empty_database", "tiny_model"]


def tiny_model(folder: Path, docs: int, epochs: int, encoder: str = "") -> Path:
    """A small model trained on a generated 10-label corpus (labels topic-00 ... topic-09), saved in ``folder``;
    ``encoder`` names a pretrained text encoder for it to read beside the tf-idf features."""
    corpus = generate_corpus(docs, 10, seed=11)
    trained = train(corpus, ModelConfig(embed_dim=32, latent_dim=16, label_hidden=32, pooling="sum", dropout=0.1),
                    TrainConfig(epochs=epochs, lr=0.01, min_df=1, encoder=encoder))
    out = folder / "model"
    checkpoint.save(trained, out)
    return out


@contextmanager
def empty_database(address: str, db: int) -> Iterator[redis.Redis]:
    """A client on database ``db`` of the server at ``address``, emptied before and after."""
    client = redis.Redis.from_url(f"redis://{address}/{db}")
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
