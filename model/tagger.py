"""The public prediction API: load a checkpoint, tag documents in batches::

    tagger = Tagger.load("runs/demo/model")
    tagger.predict(["Crude oil prices rose sharply ..."], k=3)
    # [[('crude', 0.97), ('ship', 0.41), ('nat-gas', 0.22)]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from model import checkpoint
from model.boost import LabelBoost
from model.data import Corpus, label_matrix
from model.device import resolve_device
from model.errors import ModelError
from model.metrics import evaluate, frequency_ranking, ndcg_rows, precision_rows, propensities
from model.neighbours import Neighbours
from model.rank_ae import Partner, RankAE, predict_topk
from model.text import Featurizer
from model.vector_head import VectorHead

__all__ = ["Scored", "Tagger", "score_ranking"]

Tags = list[tuple[str, float]]


class Tagger:
    """A loaded model that turns texts (or feature rows) into ranked ``(label, score)`` lists."""

    def __init__(self, model: RankAE, featurizer: Featurizer, label_names: Sequence[str],
                 version: str = "", metrics: dict[str, Any] | None = None,
                 neighbours: Neighbours | None = None, boost: LabelBoost | None = None,
                 head: VectorHead | None = None, partner: Partner | None = None) -> None:
        self.model = model.eval()
        self.featurizer = featurizer
        self.label_names = list(label_names)
        self.version = version
        self.metrics = metrics or {}
        self.neighbours = neighbours  # nearest-neighbour votes blended into the network's scores, if chosen
        self.boost = boost or LabelBoost()
        # a layer over the encoder's vector served beside a network that reads the words alone, if chosen
        self.head = None if head is None else head.on(self.device)
        self.partner = partner  # a second network served beside the first (the one reading the encoder), if chosen
        bias = self.boost.bias(self.label_names)
        # (L,) added to served scores, moved to the model's device once rather than per batch
        self._bias = None if bias is None else torch.from_numpy(bias).to(self.device)

    @classmethod
    def load(cls, directory: Path | str, device: str | None = None) -> Tagger:
        """Load a checkpoint onto ``device`` (CUDA when present and none is named)."""
        return cls.from_checkpoint(checkpoint.load(directory, resolve_device(device)))

    @classmethod
    def from_checkpoint(cls, loaded: checkpoint.Checkpoint) -> Tagger:
        """The tagger of a loaded checkpoint."""
        return cls(loaded.model, loaded.featurizer, loaded.label_names, loaded.version, loaded.metrics,
                   loaded.neighbours, loaded.boost, loaded.head, loaded.partner)

    @classmethod
    def from_trained(cls, trained: checkpoint.TrainedModel, metrics: dict[str, Any] | None = None) -> Tagger:
        """The tagger of a model just trained (not yet saved): no version; ``metrics`` or its validation ones."""
        return cls(trained.model, trained.featurizer, trained.label_names, "",
                   trained.metrics if metrics is None else metrics, trained.neighbours, trained.boost, trained.head,
                   trained.partner)

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.model.parameters()).device

    def prepare(self) -> None:
        """Do now what the first prediction would otherwise pay for: load the text encoder (if any) and build
        the neighbour index's matrices (if any)."""
        self.featurizer.prepare()
        for neighbours in (self.neighbours, self.partner.neighbours if self.partner else None):
            if neighbours is not None:
                neighbours.prepare()

    def features(self, docs: Sequence[str] | sp.csr_matrix) -> sp.csr_matrix:
        """Documents → weighted sparse rows (n, n_features), as the model was trained on."""
        if self.featurizer.kind == "features" and not isinstance(docs, sp.spmatrix):
            raise ModelError("this model was trained on a feature matrix; pass feature rows, not texts")
        return self.featurizer.transform(docs)

    def topk(self, rows: sp.csr_matrix, k: int = 5, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Top-k label ids and scores for featurized rows: two (n, min(k, L)) arrays, best first."""
        if k < 1:
            raise ModelError(f"k must be at least 1, got {k}")
        return predict_topk(self.model, rows, k, batch_size, self.device, self.neighbours, self._bias, self.head,
                            self.partner)

    def predict(self, docs: Sequence[str] | sp.csr_matrix, k: int = 5, batch_size: int = 512) -> list[Tags]:
        """Each document's top-k ``(label, score)`` pairs, best first; no autograd, batched."""
        ids, scores = self.topk(self.features(docs), k, batch_size)
        names = self.label_names
        return [[(names[i], round(float(s), 6)) for i, s in zip(row_ids, row_scores, strict=True)]
                for row_ids, row_scores in zip(ids, scores, strict=True)]

    def evaluate(self, corpus: Corpus) -> dict[str, float]:
        """P@k, nDCG@k and PSP@k (k = 1, 3, 5) on a labelled corpus; labels the model never saw are ignored."""
        return self.scored(corpus).metrics

    def document_scores(self, corpus: Corpus) -> dict[str, np.ndarray]:
        """P@1 and nDCG@5 of each document of a labelled corpus, (n,) each: what paired comparisons of two
        models on the same documents need (labels the model never saw count as misses)."""
        return self.scored(corpus).rows

    def scored(self, corpus: Corpus) -> Scored:
        """Both of the above, from one ranking of the corpus."""
        ids, _ = self.topk(self.features(corpus.inputs), 5)
        return score_ranking(ids, corpus, self.label_names, self._propensities())

    def baseline_scores(self, corpus: Corpus) -> dict[str, np.ndarray]:
        """``document_scores`` of the label-frequency baseline over this model's labels (the most frequent in
        training first, whatever the text): the floor any model that reads the text should clear."""
        y = label_matrix(corpus.labels, self.label_names)
        return _document_rows(frequency_ranking(*y.shape), y)

    def _propensities(self) -> np.ndarray | None:
        counts = np.asarray(self.metrics.get("label_counts", []), dtype=np.float64)
        n_train = int(self.metrics.get("n_train", 0))
        if counts.size != len(self.label_names) or n_train < 1:
            return None
        return propensities(counts, n_train)


@dataclass(frozen=True)
class Scored:
    """A ranking of a labelled corpus, scored: per document for paired comparisons, and averaged."""

    rows: dict[str, np.ndarray]  # "p@1", "ndcg@5" -> (n,)
    metrics: dict[str, float]  # P@k, nDCG@k, PSP@k (k = 1, 3, 5) and "n_docs"


def score_ranking(top5: np.ndarray, corpus: Corpus, label_names: Sequence[str],
                  label_propensities: np.ndarray | None = None) -> Scored:
    """Score the top 5 label ids (n, 5) of each of ``corpus``'s n documents against its labels (those not in
    ``label_names`` count as misses); PSP@k where ``label_propensities`` (L,) are given."""
    y = label_matrix(corpus.labels, label_names)
    return Scored(_document_rows(top5, y), {**evaluate(top5, y, label_propensities), "n_docs": float(len(corpus))})


def _document_rows(topk: np.ndarray, y: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Per-document P@1 and nDCG@5, (n,) each, of the rankings ``topk`` (n, ≥5) against labels ``y`` (n, L)."""
    return {"p@1": precision_rows(topk, y, 1), "ndcg@5": ndcg_rows(topk, y, 5)}
