"""Which words made a document's tags.

A model with a tag head (the default) explains by attribution: the top tag t's tag-head logit is
Σ_c T2[t, c]·relu(x'_c + b_c) + bias with x' = Σ_j w_j·e_j, so over the channels c that are active,
word j contributes exactly w_j·Σ_c T2[t, c]·e_j[c] to it: a signed number in logit units, positive
for words that push towards the tag. Frequent words carry low tf-idf weights w_j and unrelated words
point away from T2[t], so they score near zero or below.

A model with SE channel attention and no tag head (the paper preset) explains as the paper's §3.4
(Fig. 5): a word's attention is the sum of its channel weights A[j, c] ∈ (0, 1) (Eq. 5) over the C
channels, Σ_c A[j, c] ∈ (0, C). A word that occurs several times is one sparse entry, so it gets one weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from model.errors import ModelError
from model.rank_ae import RankAE, SparseBatch
from model.tagger import Tagger

__all__ = ["Explanation", "explain", "require_attention", "require_explainable", "tag_attribution",
           "token_attention"]


def require_attention(model: RankAE) -> torch.nn.Module:
    """The model's channel-attention module; ModelError (saying what to do) when it has none."""
    attention = model.features.attention
    if attention is None:
        raise ModelError("this model was trained without channel attention (attention=false: the default "
                         "preset and the 'No attn' ablation), so it has no attention weights to explain; "
                         "retrain it with --attention (or --preset paper) to use explain")
    return attention


def require_explainable(model: RankAE) -> None:
    """ModelError (saying what to do) unless the model has a tag head or channel attention to explain by."""
    if model.tag_head is None:
        require_attention(model)


def token_attention(model: RankAE, rows: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-word channel-attention mass of each row of ``rows`` (n, n_features [+ dense_features]).

    Returns one ``(feature_ids, weights)`` pair per document, both (nnz_doc,): the document's
    feature ids in CSR order and Σ_c A[j, c] for each, in (0, C). Raises ModelError when the model
    has no attention.
    """
    attention = require_attention(model)

    def mass(batch: SparseBatch, device: torch.device) -> torch.Tensor:
        weighted = model.features.embedding(batch.ids) * batch.weights[:, None]  # V': (nnz, C)
        return attention(weighted).sum(dim=1)  # Σ_c A: (nnz,)

    return _per_word(model, rows, mass)


def tag_attribution(model: RankAE, rows: sp.csr_matrix, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each word's contribution to the tag-head logit of one label per row; labels: (n,) label ids.

    Returns one ``(feature_ids, contributions)`` pair per document, both (nnz_doc,), in CSR order.
    Raises ModelError when the model has no tag head.
    """
    head = model.tag_head
    if head is None:
        raise ModelError("this model has no tag head to attribute its tags to words")

    def contribution(batch: SparseBatch, device: torch.device) -> torch.Tensor:
        active = (model.features.pooled(batch) + head.bias) > 0  # (n, C) channels past the ReLU
        direction = head.out.weight[torch.as_tensor(labels, device=device)] * active  # (n, C)
        words = model.features.embedding(batch.ids) * batch.weights[:, None]  # w_j·e_j: (nnz, C)
        return (words * direction[batch.doc]).sum(dim=1)  # (nnz,)

    return _per_word(model, rows, contribution)


def _per_word(model: RankAE, rows: sp.csr_matrix,
              score: Callable[[SparseBatch, torch.device], torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``score`` (one value per sparse entry of the batch made from ``rows``) split into one ``(feature_ids,
    values)`` pair per document; a text encoder's columns are no words, so they are left out."""
    device = next(model.parameters()).device
    rows = sp.csr_matrix(rows, dtype=np.float32)
    words_only = rows[:, : model.config.n_features]
    model.eval()
    with torch.inference_mode():
        values = score(model.batch(rows, device), device).float().cpu().numpy()
    return [(words_only.indices[lo:hi].copy(), values[lo:hi])
            for lo, hi in zip(words_only.indptr[:-1], words_only.indptr[1:], strict=True)]


@dataclass(frozen=True)
class Explanation:
    """A document's top tags and its words by contribution to the top tag (or attention mass), highest first."""

    tags: list[tuple[str, float]]
    words: list[tuple[str, float]]


def explain(tagger: Tagger, docs: list[str] | sp.csr_matrix, k: int = 5, words: int = 10) -> list[Explanation]:
    """Top-k tags and the ``words`` words that contributed most to the top tag (a model with a tag head)
    or carried the most channel attention (a model with attention only), for each document."""
    require_explainable(tagger.model)
    rows = tagger.features(docs)
    label_ids, scores = tagger.topk(rows, k)
    tokens, names = tagger.featurizer.tokens, tagger.label_names
    weights = (tag_attribution(tagger.model, rows, label_ids[:, 0]) if tagger.model.tag_head is not None
               else token_attention(tagger.model, rows))
    out = []
    for row, (ids, mass) in enumerate(weights):
        order = np.argsort(-mass, kind="stable")[:words]
        named = [(tokens[i] if tokens else f"f{i}", round(float(mass[j]), 4))
                 for j, i in zip(order, ids[order], strict=True)]
        doc_tags = [(names[i], round(float(s), 6)) for i, s in zip(label_ids[row], scores[row], strict=True)]
        out.append(Explanation(doc_tags, named))
    return out
