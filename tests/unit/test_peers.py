"""The peers' data files: what omikuji is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks import peers


def test_xmlrepo_file_leaves_out_rows_without_labels_or_features(tmp_path: Path) -> None:
    x = sp.csr_matrix(np.array([[0.5, 0.0], [0.0, 0.0], [0.0, 0.25], [1.0, 0.0]]))
    y = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 1, 0]]))
    path = tmp_path / "train.txt"
    peers._write_xmlrepo(path, x, y)
    # row 1 has a label but no feature, row 2 a feature but no label: neither is written
    assert path.read_text(encoding="ascii").splitlines() == ["2 2 3", "0,2 0:0.5", "1 0:1"]


def test_omikuji_trains_on_a_corpus_with_featureless_rows(tmp_path: Path) -> None:
    pytest.importorskip("omikuji", reason="pip install -e '.[bench]'")
    rng = np.random.default_rng(0)
    dense = rng.random((60, 20)) * (rng.random((60, 20)) < 0.3)
    dense[::10] = 0  # every tenth document has no known word
    labels = rng.random((60, 4)) < 0.4
    labels[:, 0] = True
    x, y = sp.csr_matrix(dense), sp.csr_matrix(labels.astype(np.float32))
    result = peers.run_feature_peer("omikuji-parabel", x, y, x, 2, 0, tmp_path)
    assert result.topk.shape == (60, 2)
