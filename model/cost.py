"""What serving one document costs, counted rather than timed, so that a choice made on it (whether the trainer
tries the neighbour votes, ``TrainConfig.min_docs_per_s``) comes out the same on every run and machine.

Timing made it hinge on the moment: the same model timed at 19,050 and 22,600 documents/s minutes apart, and a
corpus whose rate lies near the floor got votes in one run and none in the next. The estimate is in
microseconds of the reference machine, a 2-core VM (Intel Xeon, torch 2.13 CPU) serving top-5 at batch 256
with torch's two threads, as ``rank_ae.served_rate`` times it. Its constants were fitted on fourteen corpora
(the eight shared sets, four of them halved, and the feedback benchmark's two seeds); docs/results.md, "The
votes' floor, counted", has the fit: within 15% of the best timed rate on every sparse index, and 22% under
it on mediamill's dense one.
"""

from __future__ import annotations

from dataclasses import dataclass

import scipy.sparse as sp

from model.neighbours import Neighbours

__all__ = ["ServedCost", "served_cost"]

# The network with the label centroids: a fixed part, the embedding's rows read per document (stored entries ×
# width) and the label layers (width × labels: tag head, decoder, centroid cosine). Fitted at width 1,024.
_NETWORK_FIXED_US, _NETWORK_PER_ENTRY_WIDTH_US, _NETWORK_PER_LABEL_WIDTH_US = 8.2, 1.23e-4, 1.5e-5
# The votes: a fixed part (top-k over the block, the neighbours' labels), each similarity the search yields
# (scipy builds the sparse block, then it is made dense) and each multiply-add of the sparse product.
_VOTES_FIXED_US, _VOTES_PER_SIMILARITY_US, _VOTES_PER_MULTIPLY_ADD_US = 17.7, 0.0108, 0.00033


@dataclass(frozen=True)
class ServedCost:
    """Microseconds per document on the reference machine, by part."""

    network_us: float  # the network and the label centroids
    votes_us: float  # the neighbour votes; 0 when they are not served

    @property
    def docs_per_s(self) -> float:
        """Documents/s this cost allows, model-only."""
        return 1e6 / (self.network_us + self.votes_us)


def served_cost(rows: sp.csr_matrix, width: int, n_labels: int, neighbours: Neighbours | None = None) -> ServedCost:
    """The counted cost of serving featurized ``rows`` (n, F) with a network of ``width`` channels over
    ``n_labels`` labels, with ``neighbours``' votes where their weight is above 0."""
    n = max(rows.shape[0], 1)
    network = (_NETWORK_FIXED_US + _NETWORK_PER_ENTRY_WIDTH_US * rows.nnz / n * width
               + _NETWORK_PER_LABEL_WIDTH_US * n_labels * width)
    if neighbours is None or neighbours.votes_weight <= 0:
        return ServedCost(network, 0.0)
    similarities, multiply_adds = neighbours.search_counts(rows)
    votes = (_VOTES_FIXED_US + _VOTES_PER_SIMILARITY_US * similarities
             + _VOTES_PER_MULTIPLY_ADD_US * multiply_adds)
    return ServedCost(network, votes)
