"""PMI label embedding (after Chollet; the blog seed): co-occurrence PMI → truncated SVD → E = U·√S.

With Y the binary (n, L) label matrix:

    P(i, j) = (Yᵀ Y)_{ij} / n,   P(i) = P(i, i),   PMI(i, j) = ln(P(i, j) / (P(i) P(j)))  for i ≠ j

computed only on co-occurring pairs, so the matrix stays sparse; pairs that never co-occur, and the
diagonal, are 0 (the blog's choice: "no evidence" rather than −∞). PMI ≈ U S Vᵀ (top k singular
triplets) and the label embedding is E = U_k · √S_k, one row per label. A document's label set M
(a row of Y) embeds as M · E.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

__all__ = ["embed_label_sets", "label_embedding", "pmi_matrix"]

_DENSE_SVD_MAX = 4096  # below this many labels a dense SVD is exact, deterministic and fast


def pmi_matrix(y: sp.csr_matrix) -> sp.csr_matrix:
    """Sparse (L, L) PMI of label co-occurrence; zero counts and the diagonal stay 0.

    >>> y = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 0], [0, 0]]))
    >>> round(float(pmi_matrix(y)[0, 1]), 4)  # ln((1/4) / (2/4 · 1/4)) = ln 2
    0.6931
    """
    y = sp.csr_matrix(y, dtype=np.float64)
    joint = sp.csr_matrix(y.T @ y) / y.shape[0]
    marginal = joint.diagonal().copy()
    joint.setdiag(0)
    joint.eliminate_zeros()
    pairs = joint.tocoo()
    pairs.data = np.log(pairs.data / (marginal[pairs.row] * marginal[pairs.col]))
    return pairs.tocsr()


def label_embedding(y: sp.csr_matrix, dim: int, seed: int = 0) -> np.ndarray:
    """E = U_k·√S_k from the top-``dim`` singular triplets of the PMI matrix: (L, dim) float32.

    ``dim`` is capped at L − 1 (columns beyond the rank are zero-padded). Signs are fixed so that each
    column's largest-magnitude entry is positive, making the result deterministic.
    """
    pmi = pmi_matrix(y)
    n_labels = pmi.shape[0]
    k = max(1, min(dim, n_labels - 1))
    u, s = _top_singular(pmi, k, seed)
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    embedding = (u * signs) * np.sqrt(s)
    padded = np.zeros((n_labels, dim), dtype=np.float32)
    padded[:, :k] = embedding
    return padded


def _top_singular(matrix: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors and values, largest first: ((L, k), (k,))."""
    if matrix.shape[0] <= _DENSE_SVD_MAX:
        u, s, _ = np.linalg.svd(matrix.toarray())
        return u[:, :k], s[:k]
    v0 = np.random.default_rng(seed).standard_normal(matrix.shape[0])
    u, s, _ = svds(matrix, k=k, v0=v0)
    order = np.argsort(-s)  # svds returns ascending singular values
    return u[:, order], s[order]


def embed_label_sets(y: sp.csr_matrix, embedding: np.ndarray) -> np.ndarray:
    """Documents' label sets in the embedding space, M · E: (n, L) × (L, k) → (n, k)."""
    return np.asarray(sp.csr_matrix(y) @ embedding)
