"""A served-score boost for labels that are new to the model.

A label admitted from users' corrections starts with a dozen documents against thousands for the labels
it competes with, often near-synonyms it is refining (Stack Exchange cooking: ``storage`` beside
``storage-method``, ``olive-oil`` beside ``oil``). Network, votes and centroids all rank it low at first:
on the feedback benchmark's clean-label ceiling such labels reached recall@5 of 19% (cooking) and 43%
(biology), while old labels with as few training documents reached 65% and 36%. Adding a small constant
to the new labels' served scores puts them in front of users, who confirm or correct them, as fresh
items are shown in a recommender. The learner chooses the weight each round: the largest that costs the
held-out set (old labels only) at most ``TAGGER_NEW_LABEL_COST`` of P@1 (worker/learn/rounds.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelBoost"]


@dataclass(frozen=True)
class LabelBoost:
    """``weight`` added to the served score of each label in ``labels``."""

    labels: tuple[str, ...] = ()
    weight: float = 0.0

    def bias(self, label_names: Sequence[str]) -> np.ndarray | None:
        """(L,) float32: ``weight`` for the boosted labels among ``label_names``, 0 elsewhere; None when
        nothing is boosted.

        >>> LabelBoost(("b",), 0.5).bias(["a", "b", "c"]).tolist()
        [0.0, 0.5, 0.0]
        """
        chosen = set(self.labels)
        if self.weight <= 0 or not chosen & set(label_names):
            return None
        return np.array([self.weight if name in chosen else 0.0 for name in label_names], dtype=np.float32)

    def to_dict(self) -> dict[str, object]:
        """The JSON form checkpoints store."""
        return {"labels": list(self.labels), "weight": self.weight}
