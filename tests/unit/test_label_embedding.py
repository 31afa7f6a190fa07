"""The PMI label embedding on the blog's 7×5 toy example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from model.label_embedding import embed_label_sets, label_embedding, pmi_matrix

# The blog's toy matrix: 7 documents, 5 labels.
M = sp.csr_matrix(np.array([
    [0, 1, 0, 1, 0],
    [1, 1, 0, 0, 0],
    [0, 0, 1, 1, 0],
    [1, 0, 0, 0, 1],
    [0, 1, 1, 1, 0],
    [1, 0, 0, 1, 1],
    [0, 0, 0, 0, 1],
]))


def hand_pmi() -> np.ndarray:
    """PMI from counts: label frequencies and pairwise co-occurrences counted by eye."""
    freq = [3, 3, 2, 4, 3]  # documents per label
    together = {(0, 1): 1, (0, 3): 1, (0, 4): 2, (1, 2): 1, (1, 3): 2, (2, 3): 2, (3, 4): 1}
    pmi = np.zeros((5, 5))
    for (i, j), count in together.items():
        pmi[i, j] = pmi[j, i] = math.log((count / 7) / ((freq[i] / 7) * (freq[j] / 7)))
    return pmi


def test_pmi_matches_hand_computation() -> None:
    assert pmi_matrix(M).toarray() == pytest.approx(hand_pmi())


def test_never_co_occurring_pairs_and_diagonal_are_zero_and_not_stored() -> None:
    pmi = pmi_matrix(M)
    assert pmi[0, 2] == 0.0 and pmi[1, 4] == 0.0  # never together
    assert np.all(pmi.diagonal() == 0.0)
    assert pmi.nnz == 14  # 7 co-occurring pairs, both orders


def test_embedding_columns_carry_the_top_singular_values() -> None:
    embedding = label_embedding(M, 2)
    singular = np.linalg.svd(hand_pmi(), compute_uv=False)
    # E = U·√S with orthonormal U: column norms squared are the singular values, largest first
    assert (embedding**2).sum(axis=0) == pytest.approx(singular[:2], rel=1e-5)
    assert embedding.shape == (5, 2)


def test_embedding_is_deterministic_and_sign_fixed() -> None:
    first, second = label_embedding(M, 3), label_embedding(M, 3)
    assert np.array_equal(first, second)
    largest = first[np.abs(first).argmax(axis=0), np.arange(3)]
    assert np.all(largest > 0)


def test_dimension_beyond_rank_is_zero_padded() -> None:
    embedding = label_embedding(M, 8)
    assert embedding.shape == (5, 8)
    assert np.all(embedding[:, 4:] == 0.0)


def test_label_sets_embed_as_sums_of_label_rows() -> None:
    embedding = label_embedding(M, 2)
    docs = embed_label_sets(M, embedding)
    assert docs[6] == pytest.approx(embedding[4])  # document 7 has only label 5
    assert docs[1] == pytest.approx(embedding[0] + embedding[1])


def test_a_label_that_never_occurs_gets_a_zero_row() -> None:
    y = sp.hstack([M, sp.csr_matrix((7, 1))]).tocsr()
    assert np.all(label_embedding(y, 2)[5] == 0.0)
