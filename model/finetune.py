"""Fine-tuning a copy of a live model on corrected examples mixed with a replay of its training data.

The corrections are few and noisy; training on them alone would pull the model away from everything
else it knows (catastrophic forgetting). Each round therefore mixes ``replay_ratio`` original training
documents per correction, and runs a few epochs at a small learning rate. The live model is never
touched: the round returns a candidate that a guard accepts or rejects.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from model.config import LOSSES, ModelConfig, TrainConfig
from model.epochs import EpochLoop
from model.errors import ConfigError
from model.rank_ae import RankAE

__all__ = ["FineTuneConfig", "fine_tune"]


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings of one fine-tuning round."""

    epochs: int = 3  # passes over corrections + replay
    lr: float = 5e-4  # a quarter of the training rate: nudge, do not retrain
    batch_size: int = 32
    replay_ratio: float = 2.0  # original training documents mixed in per correction example
    loss: str = ""  # override the model's loss ("margin" or "bce"); empty keeps it
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss and self.loss not in LOSSES:
            raise ConfigError(f"fine-tune loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 1 or self.replay_ratio < 0:
            raise ConfigError("fine-tune epochs must be ≥ 1 and replay_ratio ≥ 0")


def fine_tune(model: RankAE, x: sp.csr_matrix, y: sp.csr_matrix, replay_x: sp.csr_matrix,
              replay_y: sp.csr_matrix, config: FineTuneConfig) -> RankAE:
    """A fine-tuned copy of ``model``; x, replay_x: (n, n_features) rows, y, replay_y: (n, L) labels."""
    candidate = copy.deepcopy(model)
    if config.loss and config.loss != model.config.loss:
        candidate.config = ModelConfig.from_dict({**model.config.to_dict(), "loss": config.loss})
    rows_x, rows_y = _mix(x, y, replay_x, replay_y, config)
    device = next(model.parameters()).device
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               seed=config.seed, patience=config.epochs)
    torch.manual_seed(config.seed)
    loop = EpochLoop(candidate, rows_x, rows_y, train_config, device)
    with tqdm(total=config.epochs, disable=True) as bar:
        for _ in range(config.epochs):
            loop.epoch(bar)
    return candidate.eval()


def _mix(x: sp.csr_matrix, y: sp.csr_matrix, replay_x: sp.csr_matrix, replay_y: sp.csr_matrix,
         config: FineTuneConfig) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Corrections plus a seeded sample of replay rows (with replacement when replay is short)."""
    wanted = round(config.replay_ratio * x.shape[0])
    if wanted == 0 or replay_x.shape[0] == 0:
        return x, y
    rng = np.random.default_rng(config.seed)
    picks = rng.choice(replay_x.shape[0], size=wanted, replace=wanted > replay_x.shape[0])
    return sp.vstack([x, replay_x[picks]]).tocsr(), sp.vstack([y, replay_y[picks]]).tocsr()

