"""The counted serving cost, by hand: the reference machine's microseconds from a model's sizes and the votes'
search counts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from model.cost import ServedCost, served_cost
from model.neighbours import Neighbours

# Two featurized documents with 3 and 1 stored entries: 2 per document.
ROWS = sp.csr_matrix(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]))


def test_the_network_s_cost_follows_its_entries_width_and_labels() -> None:
    # 8.2 + 1.23e-4 · 2 entries · 1,000 channels + 1.5e-5 · 100 labels · 1,000 channels = 8.2 + 0.246 + 1.5
    cost = served_cost(ROWS, width=1000, n_labels=100)
    assert cost == ServedCost(pytest.approx(9.946), 0.0)
    assert cost.docs_per_s == pytest.approx(1e6 / 9.946)


def test_the_votes_cost_follows_the_search_counts_and_only_when_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("model.neighbours._DENSE_INDEX", 2.0)  # a sparse index
    # Three indexed documents: features 0 and 1 on the first, 2 on the second, 0 and 2 on the third.
    index = Neighbours.index(sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])),
                             sp.csr_matrix(np.eye(3)), k=2, power=1.0, share=0.4, max_doc_freq=1, centroids=0.1)
    # Row 1 meets features 0 (2 documents), 1 (1), 2 (2): 5 multiply-adds, all 3 documents; row 2 meets feature 2:
    # 2 multiply-adds, 2 documents. Mean: 2.5 similarities, 3.5 multiply-adds.
    assert index.search_counts(ROWS) == (2.5, 3.5)
    cost = served_cost(ROWS, width=1000, n_labels=100, neighbours=index)
    # 17.7 + 0.0108 · 2.5 + 0.00033 · 3.5
    assert cost.votes_us == pytest.approx(17.7 + 0.027 + 0.001155)
    assert cost.docs_per_s == pytest.approx(1e6 / (9.946 + 17.728155))
    no_votes = index.with_weights(0.4, 0.6)  # network and centroids take everything
    assert served_cost(ROWS, width=1000, n_labels=100, neighbours=no_votes).votes_us == 0.0
