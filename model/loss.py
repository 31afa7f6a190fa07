"""Loss functions of Rank-AE and its variants; pure functions of tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["bce_loss", "cosine_loss", "latent_loss", "log_odds", "margin_ranking_loss"]


def margin_ranking_loss(scores: torch.Tensor, targets: torch.Tensor, margin: float,
                        reduction: str = "sum") -> torch.Tensor:
    """Marginal ranking loss L_P + L_N of the paper (Eq. 2-4), averaged over the batch.

    scores: (batch, n_labels) predicted label scores y'; targets: (batch, n_labels) bool, True = positive.

        L_P = Σ_{n∈N} max_{p∈P} (m + y'_n − y'_p)_+ = Σ_{n∈N} (m + y'_n − min_{p∈P} y'_p)_+
        L_N = Σ_{p∈P} max_{n∈N} (m + y'_n − y'_p)_+ = Σ_{p∈P} (m + max_{n∈N} y'_n − y'_p)_+

    The inner max over pairs reduces to one min over positives and one max over negatives, so the
    cost is O(L) per example. An example with no positive or no negative label has nothing to rank:
    it contributes 0 (and still counts in the batch mean).

    ``reduction="sum"`` is Eq. 3-4 as printed; ``"mean"`` divides L_P by |N| and L_N by |P|, so an
    example's loss is at most 2·(m + score range) whatever L and |y| are. With the sum, a document of
    Delicious (983 labels, 19 per document) starts near 1,000 against the latent term's ~1 and training
    diverged (docs/results.md, "Delicious").
    """
    positive = targets.bool()
    negative = ~positive
    inf = torch.tensor(float("inf"), dtype=scores.dtype, device=scores.device)
    min_positive = torch.where(positive, scores, inf).amin(dim=1, keepdim=True)  # (batch, 1)
    max_negative = torch.where(negative, scores, -inf).amax(dim=1, keepdim=True)  # (batch, 1)
    zero = scores.new_zeros(())
    loss_p = torch.where(negative, (margin + scores - min_positive).clamp(min=0), zero).sum(dim=1)
    loss_n = torch.where(positive, (margin + max_negative - scores).clamp(min=0), zero).sum(dim=1)
    if reduction == "mean":
        loss_p = loss_p / negative.sum(dim=1).clamp(min=1)
        loss_n = loss_n / positive.sum(dim=1).clamp(min=1)
    rankable = positive.any(dim=1) & negative.any(dim=1)
    return torch.where(rankable, loss_p + loss_n, zero).mean()


def log_odds(frequency: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Each label's log-odds, (L,) float32, from its share of documents (L,): the starting bias of a BCE-trained
    output layer (the prior initialisation of Lin et al., "Focal Loss", 2017)."""
    p = torch.as_tensor(frequency, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over labels, averaged over the batch (the BCE-AE ablation).

    logits: (batch, n_labels) pre-sigmoid scores; targets: (batch, n_labels) 0/1.
    """
    per_label = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return per_label.sum(dim=1).mean()


def latent_loss(x_h: torch.Tensor, y_h: torch.Tensor) -> torch.Tensor:
    """L_h: squared distance between feature and label embeddings, summed over h, batch-averaged.

    x_h, y_h: (batch, h).
    """
    return (x_h - y_h).pow(2).sum(dim=1).mean()


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − cos(pred, target), batch-averaged; a zero target (no label) contributes 0.

    pred, target: (batch, k).
    """
    has_target = target.norm(dim=1) > 0
    distance = 1.0 - F.cosine_similarity(pred, target, dim=1, eps=1e-8)
    return torch.where(has_target, distance, distance.new_zeros(())).mean()
