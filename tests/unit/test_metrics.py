"""P@k, nDCG@k and PSP@k against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from model.metrics import evaluate, ndcg_at_k, precision_at_k, propensities, psp_at_k, topk_of

Y = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
TOPK = np.array([[2, 1, 0, 4, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])


def test_precision_by_hand() -> None:
    # doc 1: hit at rank 1 and 3; doc 2: hit at rank 2; doc 3 has no label and scores 0
    assert precision_at_k(TOPK, Y, 1) == pytest.approx((1 + 0 + 0) / 3)
    assert precision_at_k(TOPK, Y, 3) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert precision_at_k(TOPK, Y, 5) == pytest.approx((2 / 5 + 1 / 5 + 0) / 3)


def test_ndcg_by_hand() -> None:
    d = lambda rank: 1 / math.log2(rank + 1)  # noqa: E731
    doc1 = (d(1) + d(3)) / (d(1) + d(2))
    doc2 = d(2) / d(1)
    assert ndcg_at_k(TOPK, Y, 3) == pytest.approx((doc1 + doc2 + 0) / 3)
    assert ndcg_at_k(TOPK, Y, 1) == pytest.approx((1 + 0 + 0) / 3)


def test_padding_counts_as_a_miss() -> None:
    padded = np.array([[2, -1, -1]])
    y = sp.csr_matrix(np.array([[1, 0, 1]]))
    assert precision_at_k(padded, y, 3) == pytest.approx(1 / 3)


def test_propensity_formula_by_hand() -> None:
    n, a, b = 100, 0.55, 1.5
    c = (math.log(n) - 1) * (b + 1) ** a
    expected = 1 / (1 + c * math.exp(-a * math.log(10 + b)))
    assert propensities(np.array([10]), n)[0] == pytest.approx(expected)


def test_psp_rewards_rare_labels_and_is_normalised() -> None:
    prop = np.array([0.9, 0.1, 0.5, 1.0, 1.0])
    # doc 2: true label 1 found at rank 2 -> at k=3 gain 1/0.1 over the best possible 1/0.1
    assert psp_at_k(TOPK[1:2], Y[1:2], 3, prop) == pytest.approx(1.0)
    # doc 1 at k=1: found label 2 (1/0.5 = 2) while the best is label 2 as well
    assert psp_at_k(TOPK[0:1], Y[0:1], 1, prop) == pytest.approx(1.0)
    swapped = np.array([[0, 2]])
    assert psp_at_k(swapped, Y[0:1], 1, prop) == pytest.approx((1 / 0.9) / (1 / 0.5))


def test_topk_of_orders_best_first() -> None:
    scores = np.array([[0.1, 0.7, 0.3, 0.9], [0.5, 0.4, 0.3, 0.2]])
    assert topk_of(scores, 3).tolist() == [[3, 1, 2], [0, 1, 2]]


def test_evaluate_reports_all_keys() -> None:
    scores = evaluate(TOPK, Y, np.full(5, 0.5))
    assert set(scores) == {f"{m}@{k}" for m in ("p", "ndcg", "psp") for k in (1, 3, 5)}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
