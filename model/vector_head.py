"""A logistic layer over a text encoder's vector, blended beside a network that reads the words alone.

With a text encoder named, the trainer builds two models on the same split and serves the one better on
validation, or the two blended (model/trainer.py, ``rank_ae.Partner``): the network that reads the tf-idf words
and the encoder's vector together, and the default tf-idf network (with its neighbour scores) served beside
this layer:

    served = share·network + (1 − share)·σ(W e + b)      e: the encoder's unit vector (d,), W: (L, d), b: (L,)

Not in the paper. The words-only network and a linear model over e disagree more than the encoder-reading
network and that same layer do, so their blend was ahead of the encoder-reading network on test P@1 on four
of five sets measured (the fine-tuned encoder's Reuters 95.40 against 94.67); on validation it won on two,
hence a choice per run rather than a new default (docs/results.md, "A linear layer over the encoder's vector",
and "The trainer builds both encoder models").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from model.loss import log_odds
from model.metrics import evaluate, precision_rows

__all__ = ["SHARES", "VectorHead", "best_weight", "choose_share", "fit_layer"]

# The network's weights tried on validation; 1.0 (the network alone) is the baseline the layer must beat.
SHARES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
# How the layer trains (the probe's settings): Adam at 1e-2 on batches of 64, BCE with biases starting at the
# labels' log-odds, at most 60 epochs, the epoch best on validation P@1 kept; it stops after 10 without gain.
_LR, _BATCH, _EPOCHS, _PATIENCE = 1e-2, 64, 60, 10
_BLOCK = 4096  # validation rows scored at once


@dataclass(frozen=True)
class VectorHead:
    """The layer's weights and the network's share of the served score."""

    weight: torch.Tensor  # (L, d) float32
    bias: torch.Tensor  # (L,) float32
    share: float  # the network's weight; the layer gets 1 − share

    @property
    def dim(self) -> int:
        """Size of the encoder vector the layer reads."""
        return int(self.weight.shape[1])

    def on(self, device: torch.device | str) -> VectorHead:
        """The same layer with its weights on ``device``."""
        return VectorHead(self.weight.to(device), self.bias.to(device), self.share)

    def split(self, rows: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Featurized rows (n, F + d) → the words the network reads (n, F) and the encoder's vectors (n, d)."""
        return rows[:, : rows.shape[1] - self.dim], rows[:, rows.shape[1] - self.dim:]

    def scores(self, vectors: sp.csr_matrix | np.ndarray) -> torch.Tensor:
        """σ(W e + b): (n, d) encoder vectors → (n, L) on the layer's device."""
        dense = vectors.toarray() if isinstance(vectors, sp.spmatrix | sp.sparray) else vectors
        e = torch.as_tensor(np.asarray(dense, dtype=np.float32)).to(self.weight.device)
        return torch.sigmoid(F.linear(e, self.weight, self.bias))

    def blend(self, network: torch.Tensor, vectors: sp.csr_matrix | np.ndarray) -> torch.Tensor:
        """The served score: share·network + (1 − share)·σ(W e + b); network: (n, L), vectors: (n, d)."""
        return self.share * network + (1.0 - self.share) * self.scores(vectors).to(network.device)


def fit_layer(e: np.ndarray, y: sp.csr_matrix, seed: int, e_valid: np.ndarray | None = None,
              y_valid: sp.csr_matrix | None = None, epochs: int = _EPOCHS) -> tuple[VectorHead, int]:
    """Train the logistic layer on vectors e (n, d) and labels y (n, L): the state best on validation P@1 when
    (e_valid, y_valid) are given, else the last of ``epochs``; returns it (share 0) and its epoch count."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(e.shape[1], y.shape[1])
    with torch.no_grad():
        layer.bias.copy_(log_odds(np.asarray(y.sum(axis=0)).ravel() / max(y.shape[0], 1)))
    optimiser = torch.optim.Adam(layer.parameters(), lr=_LR)
    x, rng = torch.as_tensor(e, dtype=torch.float32), np.random.default_rng(seed)
    best, best_p1, stale = (copy.deepcopy(layer.state_dict()), 0), -1.0, 0
    for epoch in range(1, epochs + 1):
        for rows in np.array_split(rng.permutation(len(x)), max(1, -(-len(x) // _BATCH))):
            targets = torch.as_tensor(y[rows].toarray(), dtype=torch.float32)
            loss = F.binary_cross_entropy_with_logits(layer(x[rows]), targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if e_valid is None or y_valid is None:
            best = (layer.state_dict(), epoch)
            continue
        p1 = _p_at_1(_head(layer.state_dict()), e_valid, y_valid)
        if p1 > best_p1:
            best, best_p1, stale = (copy.deepcopy(layer.state_dict()), epoch), p1, 0
        elif (stale := stale + 1) >= _PATIENCE:
            break
    return _head(best[0]), best[1]


def _head(state: dict[str, torch.Tensor]) -> VectorHead:
    return VectorHead(state["weight"].detach().clone(), state["bias"].detach().clone(), 0.0)


def _p_at_1(head: VectorHead, e: np.ndarray, y: sp.csr_matrix) -> float:
    """P@1 of the layer alone on vectors e (n, d) and labels y (n, L), scored a block of rows at a time so that
    no (n, L) matrix is held for a large label set."""
    with torch.no_grad():
        hits = [precision_rows(head.scores(e[i:i + _BLOCK]).argmax(dim=1, keepdim=True).cpu().numpy().copy(),
                               y[i:i + _BLOCK], 1) for i in range(0, e.shape[0], _BLOCK)]
    return float(np.concatenate(hits).mean()) if hits else 0.0


def choose_share(head: VectorHead, network: np.ndarray, vectors: sp.csr_matrix | np.ndarray,
                 y: sp.csr_matrix) -> tuple[VectorHead, dict[str, float]]:
    """The head with the network share best on validation (the larger share on a tie) and the served metrics at
    that share; network: (n, L) served scores of the network, vectors: (n, d)."""
    share, metrics = best_weight(network, head.scores(vectors).cpu().numpy(), y)
    return VectorHead(head.weight, head.bias, share), metrics


def best_weight(first: np.ndarray, second: np.ndarray, y: sp.csr_matrix,
                prefer: Callable[[float], Any] = float) -> tuple[float, dict[str, float]]:
    """The weight w ∈ ``SHARES`` of w·first + (1 − w)·second best on labels y (n, L) by P@1, then nDCG@5, then
    ``prefer(w)`` (by default the larger w), and the blend's metrics there; first, second: (n, L) scores."""
    a, b = torch.as_tensor(first), torch.as_tensor(second)
    scored = [(w, evaluate(torch.topk(w * a + (1.0 - w) * b, min(5, a.shape[1]), dim=1).indices.numpy(), y))
              for w in SHARES]
    return max(scored, key=lambda item: (item[1]["p@1"], item[1]["ndcg@5"], prefer(item[0])))
