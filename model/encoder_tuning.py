"""Fine-tuning a pretrained text encoder on the training labels, before Rank-AE trains on its vectors.

The transformer, mean-pooled, gets a linear layer over the labels and is trained with BCE for a few epochs;
the epoch with the best validation P@1 is kept, the linear layer is dropped, and the model then reads the
tuned encoder's (normalised) vectors exactly as it reads the shipped one's, encoding each document once.
Measured on Reuters (2 CPU cores, ``docs/results.md``): the frozen encoder's model scored 94.20 test P@1,
the tuned encoder with its linear layer alone 94.90 after 4 epochs of about 430 s each.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from model.encoder import EncoderSpec, piece_arrays, word_pieces
from model.encoder_backends import torch_model
from model.errors import ConfigError
from model.metrics import evaluate

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["tune_encoder"]

log = logging.getLogger(__name__)

BATCH = 16  # texts per step (2 CPU cores: about one step per second at 128 word pieces)
ENCODER_LR = 5e-5  # the transformer's rate: the usual for fine-tuning a BERT-sized model
HEAD_LR = 2e-3  # the new linear layer starts from nothing and moves faster
DROPOUT = 0.1  # on the pooled vector, as the transformer's own layers use
EVAL_BATCH = 64


class _Tagging(torch.nn.Module):
    """The mean-pooled encoder with a linear layer over the labels, its biases at the labels' log-odds."""

    def __init__(self, wanted: EncoderSpec, prior: np.ndarray) -> None:
        super().__init__()
        self.encoder = torch_model(wanted)
        self.dropout = torch.nn.Dropout(DROPOUT)
        self.head = torch.nn.Linear(wanted.dim, prior.size)
        odds = np.clip(prior, 1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 0.01)
            self.head.bias.copy_(torch.as_tensor(np.log(odds / (1 - odds)), dtype=torch.float32))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (batch, tokens) → label logits (batch, L)."""
        return self.head(self.dropout(self.encoder.pooled(ids, mask)))


def tune_encoder(wanted: EncoderSpec, texts: Sequence[str], y: sp.csr_matrix, valid_texts: Sequence[str],
                 y_valid: sp.csr_matrix, epochs: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """The transformer's state dict (on the CPU) after up to ``epochs`` epochs of BCE on the labels y (n, L),
    from the epoch with the best P@1 on (valid_texts, y_valid (m, L)); the package's weights if none beat them."""
    if epochs < 1:
        raise ConfigError(f"encoder fine-tuning needs at least 1 epoch, got {epochs}")
    torch.manual_seed(seed)
    model = _Tagging(wanted, np.asarray(y.mean(axis=0)).ravel()).to(device)
    pieces = word_pieces(wanted)
    optimiser = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": ENCODER_LR},
                                   {"params": model.head.parameters(), "lr": HEAD_LR}], weight_decay=0.01)
    best_p1, best = _p1(model, pieces, valid_texts, y_valid, device), _state(model)
    log.info("fine-tuning the %s encoder on %d documents for up to %d epochs (validation P@1 before: %.2f%%)",
             wanted.name, len(texts), epochs, 100 * best_p1)
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        started, total, steps = time.perf_counter(), 0.0, 0
        model.train()
        for rows, ids, mask in _batches(pieces, texts, rng.permutation(len(texts)), BATCH, device):
            targets = torch.as_tensor(y[rows].toarray(), dtype=torch.float32, device=device)  # dense per batch only
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        p1 = _p1(model, pieces, valid_texts, y_valid, device)
        log.info("encoder epoch %d of %d: loss %.5f, validation P@1 %.2f%%, %.0f s", epoch, epochs,
                 total / max(steps, 1), 100 * p1, time.perf_counter() - started)
        if p1 > best_p1:
            best_p1, best = p1, _state(model)
    return best


def _state(model: _Tagging) -> dict[str, torch.Tensor]:
    return copy.deepcopy({k: v.detach().cpu() for k, v in model.encoder.transformer.state_dict().items()})


def _batches(pieces: Tokenizer, texts: Sequence[str], order: np.ndarray, size: int,
             device: torch.device) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        ids, mask = piece_arrays(pieces, [texts[i] for i in rows.tolist()])
        yield rows, torch.as_tensor(ids, device=device), torch.as_tensor(mask, device=device)


def _p1(model: _Tagging, pieces: Tokenizer, texts: Sequence[str], y: sp.csr_matrix, device: torch.device) -> float:
    """Validation P@1 of the linear layer's ranking; texts batched by length."""
    model.eval()
    top = np.zeros((len(texts), min(5, y.shape[1])), dtype=np.int64)
    order = np.argsort([len(text) for text in texts], kind="stable")
    with torch.inference_mode():
        for rows, ids, mask in _batches(pieces, texts, order, EVAL_BATCH, device):
            top[rows] = model(ids, mask).topk(top.shape[1], dim=1).indices.cpu().numpy()
    return evaluate(top, y)["p@1"]
