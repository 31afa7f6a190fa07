"""Label-noise injection on training labels, for robustness experiments (paper §3.3)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from model.errors import ConfigError

__all__ = ["add_label_noise", "parse_noise"]

KINDS = ("missing", "flip")


def parse_noise(spec: str) -> tuple[str, float]:
    """``"missing:0.3"`` → ("missing", 0.3); the empty string means no noise."""
    if not spec:
        return "", 0.0
    kind, _, rate = spec.partition(":")
    try:
        value = float(rate)
    except ValueError as err:
        raise ConfigError(f"noise {spec!r}: expected KIND:RATE such as missing:0.3") from err
    if kind not in KINDS or not 0.0 <= value <= 1.0:
        raise ConfigError(f"noise {spec!r}: KIND must be one of {KINDS} and RATE in [0, 1]")
    return kind, value


def add_label_noise(y: sp.csr_matrix, spec: str, seed: int = 0) -> sp.csr_matrix:
    """Corrupt a binary (n, L) label matrix.

    ``missing:p`` drops each positive with probability p. ``flip:p`` drops each positive with
    probability p and, per document, adds as many random invalid labels as a Binomial(|y|, p) draw,
    so label cardinality is preserved in expectation (flipping every negative with probability p
    would bury a handful of true labels under p·L false ones).
    """
    kind, rate = parse_noise(spec)
    if not kind or rate == 0.0:
        return y
    rng = np.random.default_rng(seed)
    coo = sp.coo_matrix(y)
    keep = rng.random(coo.nnz) >= rate
    rows, cols = list(coo.row[keep]), list(coo.col[keep])
    if kind == "flip":
        n_added = rng.binomial(np.diff(sp.csr_matrix(y).indptr), rate)
        for row in np.flatnonzero(n_added):
            rows.extend([row] * n_added[row])
            cols.extend(rng.integers(0, y.shape[1], size=n_added[row]))
    noisy = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=y.shape)
    noisy.data[:] = 1.0  # an added label may coincide with a kept one
    return noisy
