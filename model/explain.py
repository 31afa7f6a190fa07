"""Which words carried a document's channel attention (paper §3.4, Fig. 5).

The SE channel attention gives every word j of a document a weight per embedding channel,
A[j, c] ∈ (0, 1) (Eq. 5). As in the paper's visualisation, a word's attention is the sum of its
weights over the C channels, Σ_c A[j, c] ∈ (0, C): the words the excitation network lets through
most. A word that occurs several times is one sparse entry, so it gets one weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from model.errors import ModelError
from model.rank_ae import RankAE, SparseBatch
from model.tagger import Tagger

__all__ = ["Explanation", "explain", "require_attention", "token_attention"]


def require_attention(model: RankAE) -> torch.nn.Module:
    """The model's channel-attention module; ModelError (saying what to do) when it has none."""
    attention = model.features.attention
    if attention is None:
        raise ModelError("this model was trained without channel attention (attention=false: the default "
                         "preset and the 'No attn' ablation), so it has no attention weights to explain; "
                         "retrain it with --attention (or --preset paper) to use explain")
    return attention


def token_attention(model: RankAE, rows: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-word channel-attention mass of each row of ``rows`` (n, n_features).

    Returns one ``(feature_ids, weights)`` pair per document, both (nnz_doc,): the document's
    feature ids in CSR order and Σ_c A[j, c] for each, in (0, C). Raises ModelError when the model
    has no attention.
    """
    attention = require_attention(model)
    device = next(model.parameters()).device
    rows = sp.csr_matrix(rows, dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        batch = SparseBatch.from_csr(rows, device)
        weighted = model.features.embedding(batch.ids) * batch.weights[:, None]  # V': (nnz, C)
        mass = attention(weighted).sum(dim=1).float().cpu().numpy()  # Σ_c A: (nnz,)
    return [(rows.indices[lo:hi].copy(), mass[lo:hi])
            for lo, hi in zip(rows.indptr[:-1], rows.indptr[1:], strict=True)]


@dataclass(frozen=True)
class Explanation:
    """A document's top tags and its words by attention mass, highest first."""

    tags: list[tuple[str, float]]
    words: list[tuple[str, float]]


def explain(tagger: Tagger, docs: list[str] | sp.csr_matrix, k: int = 5, words: int = 10) -> list[Explanation]:
    """Top-k tags and the ``words`` words with the most channel attention, for each document."""
    require_attention(tagger.model)
    rows = tagger.features(docs)
    label_ids, scores = tagger.topk(rows, k)
    tokens, names = tagger.featurizer.tokens, tagger.label_names
    out = []
    for row, (ids, mass) in enumerate(token_attention(tagger.model, rows)):
        order = np.argsort(-mass, kind="stable")[:words]
        named = [(tokens[i] if tokens else f"f{i}", round(float(mass[j]), 4))
                 for j, i in zip(order, ids[order], strict=True)]
        doc_tags = [(names[i], round(float(s), 6)) for i, s in zip(label_ids[row], scores[row], strict=True)]
        out.append(Explanation(doc_tags, named))
    return out
