"""Ranking metrics for multi-label prediction: P@k, nDCG@k (paper Eq. 6-8) and PSP@k.

All functions take ``topk``, an (n_docs, k) int array of predicted label ids, best first (-1 pads
rows with fewer than k predictions), and ``y_true``, a binary (n_docs, n_labels) CSR matrix. Values
are averages over documents in [0, 1]; a document with no true label scores 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["KS", "evaluate", "frequency_ranking", "hits", "ndcg_at_k", "ndcg_rows", "precision_at_k",
           "precision_rows", "propensities", "psp_at_k", "topk_of"]

KS = (1, 3, 5)


def topk_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first: (n, L) → (n, k).

    >>> topk_of(np.array([[0.1, 0.9, 0.5]]), 2)
    array([[1, 2]])
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def frequency_ranking(n_docs: int, n_labels: int, k: int = 5) -> np.ndarray:
    """The label-frequency baseline's top k for every document, (n_docs, min(k, n_labels)): label ids are
    numbered most frequent first (``tagger train``), so each row is 0, 1, ..., whatever the text.

    >>> frequency_ranking(2, 3).tolist()
    [[0, 1, 2], [0, 1, 2]]
    """
    return np.tile(np.arange(min(k, n_labels)), (n_docs, 1))


def hits(topk: np.ndarray, y_true: sp.csr_matrix) -> np.ndarray:
    """(n, k) 0/1 array: is the prediction at each rank a true label?"""
    n, k = topk.shape
    valid = topk >= 0
    rows = np.repeat(np.arange(n), k)
    looked_up = np.asarray(y_true[rows, np.where(valid, topk, 0).ravel()]).reshape(n, k)
    return (looked_up > 0) & valid


def precision_at_k(topk: np.ndarray, y_true: sp.csr_matrix, k: int) -> float:
    """P@k = (1/k) Σ_{l ∈ rank_k} y_l, averaged over documents (Eq. 6).

    >>> y = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]]))
    >>> precision_at_k(np.array([[2, 1, 0], [1, 0, 3]]), y, 3)  # (2/3 + 1/3) / 2
    0.5
    """
    return float(precision_rows(topk, y_true, k).mean())


def precision_rows(topk: np.ndarray, y_true: sp.csr_matrix, k: int) -> np.ndarray:
    """P@k of each document: (n,) for topk (n, ≥k) label ids and y_true (n, L).

    >>> y = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]]))
    >>> precision_rows(np.array([[2, 1], [1, 0]]), y, 1).tolist()
    [1.0, 1.0]
    """
    return hits(topk[:, :k], y_true).sum(axis=1) / k


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(topk: np.ndarray, y_true: sp.csr_matrix, k: int) -> float:
    """nDCG@k = DCG@k / Σ_{l=1}^{min(k,|y|)} 1/log(l+1), averaged over documents (Eq. 7-8).

    >>> y = sp.csr_matrix(np.array([[1, 0, 1, 0]]))
    >>> round(ndcg_at_k(np.array([[1, 2, 0]]), y, 3), 4)  # (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
    0.6934
    """
    return float(ndcg_rows(topk, y_true, k).mean())


def ndcg_rows(topk: np.ndarray, y_true: sp.csr_matrix, k: int) -> np.ndarray:
    """nDCG@k of each document: (n,); 0 for a document with no true label."""
    discount = _discounts(k)
    dcg = (hits(topk[:, :k], y_true) * discount[: min(k, topk.shape[1])]).sum(axis=1)
    n_true = np.minimum(np.diff(y_true.indptr), k)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[n_true]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def propensities(label_counts: np.ndarray, n_docs: int, a: float = 0.55, b: float = 1.5) -> np.ndarray:
    """Label propensities p_l = 1 / (1 + C·e^{-A·ln(N_l + B)}), C = (ln N − 1)(B + 1)^A (Jain et al., 2016).

    label_counts: (L,) training documents per label; n_docs: N, training documents.

    >>> p = propensities(np.array([4, 1]), 4)
    >>> bool(p[0] > p[1])  # frequent labels are more likely to be observed
    True
    """
    c = (np.log(n_docs) - 1.0) * (b + 1.0) ** a
    return 1.0 / (1.0 + c * np.exp(-a * np.log(np.asarray(label_counts, dtype=np.float64) + b)))


def psp_at_k(topk: np.ndarray, y_true: sp.csr_matrix, k: int, prop: np.ndarray) -> float:
    """Propensity-scored P@k, normalised by the best achievable ranking (the pyxclib convention).

    >>> y = sp.csr_matrix(np.array([[1, 1, 0]]))
    >>> psp_at_k(np.array([[1, 2]]), y, 1, np.array([0.5, 0.25, 1.0]))  # (1/.25) / max(1/.5, 1/.25)
    1.0
    >>> psp_at_k(np.array([[0, 2]]), y, 1, np.array([0.5, 0.25, 1.0]))  # (1/.5) / (1/.25)
    0.5
    """
    inverse = 1.0 / prop
    top = topk[:, :k]
    gains = (hits(top, y_true) * inverse[np.where(top >= 0, top, 0)]).sum(axis=1)
    weighted = sp.csr_matrix(y_true.multiply(inverse[np.newaxis, :]))
    best = np.array([np.sort(weighted.data[s:e])[::-1][:k].sum()
                     for s, e in zip(weighted.indptr[:-1], weighted.indptr[1:], strict=True)])
    return float(np.divide(gains, best, out=np.zeros_like(gains), where=best > 0).mean())


def evaluate(topk: np.ndarray, y_true: sp.csr_matrix, prop: np.ndarray | None = None) -> dict[str, float]:
    """P@k, nDCG@k (and PSP@k when propensities are given) for k in 1, 3, 5, keyed like ``"p@1"``."""
    scores: dict[str, float] = {}
    for k in KS:
        scores[f"p@{k}"] = precision_at_k(topk, y_true, k)
    for k in KS:
        scores[f"ndcg@{k}"] = ndcg_at_k(topk, y_true, k)
    if prop is not None:
        for k in KS:
            scores[f"psp@{k}"] = psp_at_k(topk, y_true, k, prop)
    return scores
