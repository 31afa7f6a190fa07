"""Nearest-neighbour scores beside the network, from an index of the training rows (the featurizer's, unit
length): the votes of a document's k most similar training documents, and its cosine to each label's
centroid (the normalised sum of the rows carrying the label). Served score:

    share·network + (1 − share − centroids)·votes + centroids·centroid cosine

Not in the paper. The trainer keeps them only where the blend beats the network alone on its validation
split (docs/results.md, "Nearest-neighbour votes beside the network"), and tries the votes only where the
model served with them keeps its speed floor (``TrainConfig.min_docs_per_s``): each document searches the
whole index, so their cost grows with the training set. The centroid is the few-shot part: a
label learnt from a dozen corrected documents has a usable centroid long before the network ranks it or the
votes of its few documents outweigh those of frequent labels (docs/results.md, "Learning from corrections").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from model.metrics import precision_rows
from model.text import l2_normalise

if TYPE_CHECKING:  # torch only where votes meet the network's scores: checkpoint.read_meta stays torch-free
    import torch

__all__ = ["MAX_DOC_FREQ", "SETTINGS", "SHARES", "VOTES_MIN_GAIN", "Fold", "Neighbours", "choose"]

# (k, power) pairs the trainer tries: k neighbours, each voting with its cosine raised to ``power``.
SETTINGS = ((20, 1.0), (50, 2.0))
# Network weights tried on validation; 1 (the network alone) is the baseline. The network always keeps a share:
# it is the model, the neighbours are beside it.
SHARES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
_STEP = 0.1  # centroid weights tried: 0, 0.1, … up to 1 − share (the rest is the votes')
# Validation P@1 the votes must add over the best blend without them: each document searches the whole
# index, which cut prediction from 18,000–98,000 to 4,500–6,600 docs/s on the shared sets, and goemotions
# once took votes at weight 0.1 for +0.04 test P@1 at 36× the cost.
VOTES_MIN_GAIN = 0.005
# Centroid matrices up to this many entries (64 MiB of float32) are kept dense: Stack Exchange cooking's
# 12,802 × 735 is 38 MiB, no larger than the network's own embedding table.
_DENSE_CENTROIDS = 1 << 24
# Index rows with at least this share of entries non-zero (feature matrices such as mediamill's 120 dense
# columns) are kept dense: a block's similarities are then one BLAS product, not scipy's sparse product
# (mediamill: scipy's product alone took 12 µs per document; the served blend went from 3,200 to 18,500 docs/s).
_DENSE_INDEX = 0.25
_CHUNK = 128  # documents per similarity block: the block is (chunk, N) floats, N the indexed documents
_COUNT_ENTRIES = 1 << 22  # similarities a block of ``search_counts`` may hold at most (48 MiB as scipy's CSR)
# Text features (words) in more than this share of the indexed documents are left out of the index: nearly
# every pair of documents shares one, so they made the similarity product dense. Cooking validation: votes alone P@1
# 68.42 with every feature, 68.74 without the 0.7% above 10%, at 171 instead of 426 µs per document.
MAX_DOC_FREQ = 0.1


@dataclass
class Neighbours:
    """An index of training rows and their labels, and how their votes enter the served score."""

    rows: sp.csr_matrix  # (N, F) unit rows of the indexed training documents
    labels: sp.csr_matrix  # (N, L) their labels, 0/1
    k: int
    power: float
    share: float  # the network's weight in the served score
    centroids: float = 0.0  # the centroid cosine's weight; the votes get 1 − share − centroids

    @property
    def votes_weight(self) -> float:
        """The votes' weight in the served score."""
        return max(0.0, round(1.0 - self.share - self.centroids, 6))  # 1 − 0.3 − 0.7 is 5.6e-17 in floats

    @functools.cached_property
    def _columns(self) -> sp.csr_matrix | np.ndarray:
        """rows.T (F, N), made once: a block's similarities are one product with it; dense when the rows are
        (``_DENSE_INDEX``)."""
        dense = self.rows.nnz >= _DENSE_INDEX * np.prod(self.rows.shape)
        return np.ascontiguousarray(self.rows.T.toarray()) if dense else self.rows.T.tocsr()

    @functools.cached_property
    def _centroid_columns(self) -> sp.csr_matrix | np.ndarray:
        """(F, L): each label's centroid, the unit-length sum of the indexed rows carrying it, as a column;
        dense up to ``_DENSE_CENTROIDS`` entries (a sparse-dense product: cooking 10 instead of 34 µs/doc)."""
        columns = l2_normalise(sp.csr_matrix(self.labels.T @ self.rows)).T.tocsr()
        return columns.toarray() if np.prod(columns.shape) <= _DENSE_CENTROIDS else columns

    @functools.cached_property
    def _indexed_features(self) -> sp.dia_matrix:
        """(F, F) diagonal: 1 for the features the index holds, 0 for those left out or never seen."""
        return sp.diags((self.rows.getnnz(axis=0) > 0).astype(np.float32))

    @classmethod
    def index(cls, x: sp.csr_matrix, y: sp.csr_matrix, k: int, power: float, share: float,
              max_doc_freq: float = MAX_DOC_FREQ, centroids: float = 0.0) -> Neighbours:
        """Index rows x (N, F) with labels y (N, L), leaving out features of more than ``max_doc_freq`` of them."""
        x = sp.csr_matrix(x, dtype=np.float32)
        common = np.asarray((x != 0).sum(axis=0)).ravel() > max_doc_freq * x.shape[0]
        kept = x @ sp.diags((~common).astype(np.float32))
        kept.eliminate_zeros()
        return cls(l2_normalise(kept), sp.csr_matrix(y, dtype=np.float32), k, power, share, centroids)

    def prepare(self) -> None:
        """Build the matrices the served score reads, so the first prediction does not pay for them."""
        if self.votes_weight > 0:
            _ = self._columns
        if self.centroids > 0:
            _ = self._centroid_columns, self._indexed_features

    def with_weights(self, share: float, centroids: float) -> Neighbours:
        """The same index served with other weights."""
        return dataclasses.replace(self, share=share, centroids=centroids)

    def centroid_scores(self, x: sp.csr_matrix) -> np.ndarray:
        """Rows x (n, F) → (n, L) float32: each row's cosine, over the indexed features, to each label's
        centroid (0 for a label on no indexed document)."""
        queries = l2_normalise(sp.csr_matrix(x @ self._indexed_features))
        scores = queries @ self._centroid_columns
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def search_counts(self, x: sp.csr_matrix) -> tuple[float, float]:
        """What the votes' similarity search does per row of x (n, F), on average: (similarities it yields, the
        non-zero entries of each row's (1, N) block; multiply-adds of the sparse product, 0 for a dense index,
        whose product is one BLAS call). ``model.cost`` turns them into time."""
        if x.shape[0] == 0:
            return 0.0, 0.0
        columns = self._columns
        if isinstance(columns, np.ndarray):
            return float(columns.shape[1]), 0.0
        queries = sp.csr_matrix(x, dtype=np.float32)  # what is counted is the pattern: scaling rows keeps it
        # in blocks of at most _COUNT_ENTRIES possible similarities, so that a million indexed documents do not
        # make one (rows, N) product of gigabytes
        step = max(1, _COUNT_ENTRIES // max(columns.shape[1], 1))
        similarities = sum((queries[start:start + step] @ columns).nnz for start in range(0, x.shape[0], step))
        multiply_adds = np.diff(columns.indptr)[queries.indices].sum()  # each query entry meets its feature's row
        return similarities / x.shape[0], float(multiply_adds) / x.shape[0]

    def votes(self, x: sp.csr_matrix) -> np.ndarray:
        """Rows x (n, F) → (n, L) float32 votes in [0, 1]: the similarity-weighted share of the k nearest
        indexed documents that carry each label. Blocks of rows run on torch's thread count: scipy's sparse
        product releases the GIL (cooking: 112 instead of 208 µs per document on 2 threads)."""
        out = np.zeros((x.shape[0], self.labels.shape[1]), dtype=np.float32)
        k = min(self.k, self.rows.shape[0])
        if k == 0:
            return out
        queries = l2_normalise(x)
        starts = range(0, x.shape[0], _CHUNK)
        blocks = _pool().map(lambda start: self._block_votes(queries[start:start + _CHUNK], k), starts)
        for start, block in zip(starts, blocks, strict=True):
            out[start:start + block.shape[0]] = block
        return out

    def _block_votes(self, queries: sp.csr_matrix, k: int) -> np.ndarray:
        """Votes (n, L) of unit rows ``queries`` (n, F), n ≤ _CHUNK: one similarity block (n, N)."""
        import torch  # here, not at the top: checkpoint.read_meta imports this module and stays torch-free

        columns = self._columns
        sims = queries.toarray() @ columns if isinstance(columns, np.ndarray) else (queries @ columns).toarray()
        # torch.topk, not np.argpartition: 21 against 127 µs per document over cooking's 12,349 rows
        top = torch.topk(torch.from_numpy(sims), k, dim=1)
        weights = top.values.numpy().clip(min=0.0) ** self.power
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        picks = sp.csr_matrix((weights.ravel(), top.indices.numpy().ravel(), np.arange(0, weights.size + 1, k)),
                              shape=(sims.shape[0], self.rows.shape[0]))
        return np.asarray((picks @ self.labels).toarray(), dtype=np.float32)

    def blend(self, scores: torch.Tensor, x: sp.csr_matrix) -> torch.Tensor:
        """The served score (see the module); scores: (n, L) network scores of rows x (n, F)."""
        import torch

        served = self.share * scores
        if self.votes_weight > 0:
            served = served + self.votes_weight * torch.from_numpy(self.votes(x)).to(scores.device)
        if self.centroids > 0:
            served = served + self.centroids * torch.from_numpy(self.centroid_scores(x)).to(scores.device)
        return served


@dataclass(frozen=True)
class Fold:
    """One validation split for ``choose``: the network's ``scores`` (n, L) of its rows ``x_valid`` (n, F), and the
    training rows (x_index, y_index) its neighbours are searched among."""

    scores: np.ndarray
    x_index: sp.csr_matrix
    y_index: sp.csr_matrix
    x_valid: sp.csr_matrix


def choose(folds: Sequence[Fold], y_valid: sp.csr_matrix, settings: Iterable[tuple[int, float]] = SETTINGS,
           shares: Iterable[float] = SHARES, max_doc_freq: float = MAX_DOC_FREQ) -> Neighbours | None:
    """The neighbour index over the first fold's (x_index, y_index) and the setting and weights with the best
    validation P@1 of the blend over every fold's rows (labels y_valid (Σ n, L), the folds' rows in order), or None
    when no blend beats the network's own scores. With no ``settings`` the votes are not tried: network and label
    centroids only.

    The votes must earn their cost: a blend with them is kept only when its P@1 beats the best blend without
    them (network and centroids) by ``VOTES_MIN_GAIN``."""
    settings, shares = tuple(settings), tuple(shares)
    # one index per fold for every setting: its (k, power) are set per setting below
    indexes = [Neighbours.index(fold.x_index, fold.y_index, *SETTINGS[0], 1.0, max_doc_freq) for fold in folds]
    scores = np.vstack([fold.scores for fold in folds])
    centroid_scores = np.vstack([index.centroid_scores(fold.x_valid)
                                 for index, fold in zip(indexes, folds, strict=True)])
    cheap_p1, cheap = _p_at_1(scores, y_valid), None  # network and centroids: the same for every (k, power)
    for share in shares:
        p1 = _p_at_1(share * scores + (1.0 - share) * centroid_scores, y_valid)
        if p1 > cheap_p1 + 1e-9:  # strictly better: ties keep the network alone, or its larger share
            cheap_p1, cheap = p1, indexes[0].with_weights(share, round(1.0 - share, 6))
    dear_p1, dear = _p_at_1(scores, y_valid), None
    for k, power in settings:
        candidate = dataclasses.replace(indexes[0], k=k, power=power)
        votes = np.vstack([dataclasses.replace(index, k=k, power=power).votes(fold.x_valid)
                           for index, fold in zip(indexes, folds, strict=True)])
        for share in shares:
            for centroids in _centroid_weights(share)[:-1]:  # the last, 1 − share, leaves the votes nothing
                weighed = candidate.with_weights(share, centroids)
                p1 = _p_at_1(share * scores + weighed.votes_weight * votes + centroids * centroid_scores, y_valid)
                if p1 > dear_p1 + 1e-9:
                    dear_p1, dear = p1, weighed
    return dear if dear_p1 > cheap_p1 + VOTES_MIN_GAIN else cheap


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """The threads vote blocks run on, one per torch thread, made on first use and shared."""
    import torch

    return ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="neighbour-votes")


def _centroid_weights(share: float) -> list[float]:
    """0, 0.1, … up to 1 − share: the centroid weights tried beside a network share."""
    return [round(step * _STEP, 6) for step in range(round((1.0 - share) / _STEP) + 1)]


def _p_at_1(scores: np.ndarray, y: sp.csr_matrix) -> float:
    return float(precision_rows(np.argmax(scores, axis=1)[:, None], y, 1).mean())
