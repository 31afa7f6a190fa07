"""Typed, JSON-serialisable configuration of a Rank-AE model and of its training run.

Checkpoints carry both objects, so ``RankAE(ModelConfig.from_dict(saved))`` rebuilds a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from model.errors import ConfigError

__all__ = ["HEADS", "LABEL_INITS", "LOSSES", "ModelConfig", "TrainConfig"]

Head = Literal["rank-ae", "pmi-cosine"]
Loss = Literal["margin", "bce"]
LabelInit = Literal["random", "pmi"]
Pooling = Literal["mean", "sum"]
HEADS: tuple[Head, ...] = ("rank-ae", "pmi-cosine")
LOSSES: tuple[Loss, ...] = ("margin", "bce")
LABEL_INITS: tuple[LabelInit, ...] = ("random", "pmi")

_T = TypeVar("_T", "ModelConfig", "TrainConfig")


def _from_dict(cls: type[_T], data: dict[str, Any]) -> _T:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Rank-AE model (paper §2); sizes are filled in from the data at training time."""

    n_features: int = 0  # vocabulary size (text) or feature count (feature matrices)
    n_labels: int = 0  # L, size of the label set
    embed_dim: int = 100  # C, word-embedding size (paper: 100)
    reduction: int = 4  # r, SE channel-attention reduction ratio (paper: 4)
    latent_dim: int = 100  # h, size of x_h and y_h (paper: 100 for few labels, 200 for many)
    label_hidden: int = 512  # width of the inner layer of label encoder E and decoder D
    attention: bool = True  # SE channel attention; False is the paper's "No attn" ablation
    pooling: Pooling = "mean"  # over a document's weighted words: "mean" (paper) or "sum"
    head: Head = "rank-ae"  # "rank-ae" (E/D autoencoder) or "pmi-cosine" (regress PMI label embedding)
    loss: Loss = "margin"  # margin ranking loss (Rank-AE) or "bce" (the paper's BCE-AE ablation)
    margin: float = 1.0  # m in Eq. 3-4, applied to the decoder's logits (σ saturates: see docs/results.md)
    lambda_ae: float = 1.0  # λ in Eq. 1, weight of the label-reconstruction loss
    lambda_direct: float = 0.0  # weight of the same loss on D(F(x)); 0 = the paper (D learns from E(y) only)
    label_init: LabelInit = "random"  # "pmi" initialises E and D from the PMI label embedding
    dropout: float = 0.5  # on the pooled feature embedding x' and on E/D's inner layer
    word_dropout: float = 0.0  # training only: share of a document's words dropped per step

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.label_init not in LABEL_INITS:
            raise ConfigError(f"label_init must be one of {LABEL_INITS}, got {self.label_init!r}")
        if self.pooling not in ("mean", "sum"):
            raise ConfigError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        if self.embed_dim < self.reduction or self.embed_dim % self.reduction:
            raise ConfigError(
                f"embed_dim ({self.embed_dim}) must be a multiple of reduction ({self.reduction})"
            )
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.word_dropout < 1.0):
            raise ConfigError(f"dropout and word_dropout must be in [0, 1), got {self.dropout}, {self.word_dropout}")
        if self.margin < 0 or self.lambda_ae < 0 or self.lambda_direct < 0:
            raise ConfigError("margin, lambda_ae and lambda_direct must be non-negative")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run."""

    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 64
    lr: float = 2e-3  # Adam(W) learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    patience: int = 5  # epochs without a better validation P@1 before stopping
    schedule: str = "constant"  # learning rate: "constant" or "cosine" (decays to 0 at the last epoch)
    seed: int = 0  # seeds torch, numpy and batch order
    valid_fraction: float = 0.1  # share of training documents held out for early stopping
    refit: bool = False  # then retrain on all training documents for the best epoch count (paper §3.1)
    noise: str = ""  # label noise on training labels only: "missing:0.3" or "flip:0.3"
    min_df: int = 2  # text: minimum document frequency of a vocabulary token
    max_vocab: int = 50_000  # text: vocabulary size cap (most frequent tokens kept)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored with the model

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ConfigError("epochs, batch_size and patience must be at least 1")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ConfigError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        return _from_dict(cls, data)
