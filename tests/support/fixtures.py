"""Pieces the test folders' fixtures share: a tiny trained model, a corpus written without spaces, and an
emptied Redis database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import redis

from model import checkpoint
from model.config import ModelConfig, TrainConfig
from model.data import Corpus
from model.synthetic import generate_corpus
from model.trainer import train

__all__ = ["empty_database", "tiny_model", "unspaced_corpus"]


def tiny_model(folder: Path, docs: int, epochs: int, encoder: str = "", encoder_epochs: int = 0) -> Path:
    """A small model trained on a generated 10-label corpus (labels topic-00 ... topic-09), saved in ``folder``;
    ``encoder`` names a pretrained text encoder for it to read beside the tf-idf features, fine-tuned first for
    ``encoder_epochs``."""
    corpus = generate_corpus(docs, 10, seed=11)
    trained = train(corpus, ModelConfig(embed_dim=32, latent_dim=16, label_hidden=32, pooling="sum", dropout=0.1),
                    TrainConfig(epochs=epochs, lr=0.01, min_df=1, encoder=encoder, encoder_epochs=encoder_epochs))
    out = folder / "model"
    checkpoint.save(trained, out)
    return out


def unspaced_corpus(docs: int, seed: int = 0) -> Corpus:
    """Chinese-like documents with no spaces, one of three labels each (topic0 … topic2): 20 characters, 14
    from the label's own 12 and 6 from 40 shared ones. Tokenised by words, every document is one token seen
    once; by character pairs the label's characters make the features."""
    rng = np.random.default_rng(seed)
    chars = [chr(0x4E00 + i) for i in range(76)]
    own, shared = [chars[12 * k:12 * (k + 1)] for k in range(3)], chars[36:]
    labels = [int(rng.integers(3)) for _ in range(docs)]
    texts = ["".join(rng.permutation([*rng.choice(own[k], 14), *rng.choice(shared, 6)])) for k in labels]
    return Corpus([f"zh-{i}" for i in range(docs)], [[f"topic{k}"] for k in labels], texts=texts)


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
