"""Rank-AE (Wang et al., NAACL 2019, §2): feature embedding with dual attention + label autoencoder.

    x = (I, V)  word ids and tf-idf weights of one document (sparse; a CSR row)
    V' = V ∘ emb(I)                       spatial attention: tf-idf-weighted word embeddings (n, C)
    A  = σ(F2 δ(F1 V'ᵀ))ᵀ                 SE channel attention, reduction r (Eq. 5)       (n, C)
    x' = pool(V' ∘ A)                     average pooling over the document's words         (C,)
       [+ W_e e]                          with a pretrained text encoder: its vector e projected (C,)
    x_h = F(x) = W x' + b                 feature embedding                                 (h,)
    y_h = E(y), y' = σ(D(y_h))            label encoder / decoder, two FC layers each
    loss = L_h(x_h, y_h) + λ·L_ae(y, y')  Eq. 1; L_ae is the margin ranking loss (or BCE)
         [+ λ_d·L_ae(y, D(F(x)))]       optional, not in the paper (``lambda_direct``)
    ŷ = σ(D(F(x)))                        inference

Beside the decoder, the tag head (``tag_head``, not in the paper) scores labels straight from the pooled
embedding: t = T2 · δ(x' + b), trained with BCE on the same shared word embeddings, and inference blends
ŷ = a·σ(D(F(x))) + (1 − a)·σ(t) with the share ``a`` (``ae_share``) chosen on validation by the trainer.
With C=1024 sum-pooled embeddings the pooled x' is the hidden layer of a one-hidden-layer network over
the tf-idf features, which is what brings the peers' quality (docs/results.md, "The default model").

The ``pmi-cosine`` head replaces E/D with a fixed PMI label embedding: F regresses the document's
label-set embedding under a cosine loss, and labels are scored by cosine similarity to x_h.

Documents travel as a :class:`SparseBatch` (flat word ids, weights and the document each belongs to),
so nothing of shape (batch, vocabulary) is ever materialised. A model with ``dense_features`` reads the
last columns of its input rows (a pretrained encoder's vector, model/encoder.py) as a dense (batch, d)
block, projected into x' by one linear layer beside the word embeddings: the encoder's semantics and the
tf-idf words feed the same x', F, tag head and label autoencoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.loss import bce_loss, cosine_loss, latent_loss, log_odds, margin_ranking_loss
from model.neighbours import Neighbours
from model.vector_head import VectorHead

__all__ = ["Partner", "RankAE", "SparseBatch", "blend", "blend_topk", "labels_batch", "predict_scores", "predict_topk",
           "served_scores"]


def _to(array: np.ndarray, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    return torch.as_tensor(array).to(device=device, dtype=dtype, non_blocking=True)


@dataclass(frozen=True)
class SparseBatch:
    """A batch of sparse rows: ``ids``/``weights``/``doc`` are (nnz,), ``offsets`` is (batch,)."""

    ids: torch.Tensor  # (nnz,) int64 feature (word) ids
    weights: torch.Tensor  # (nnz,) float32 tf-idf weights
    doc: torch.Tensor  # (nnz,) int64 row of each entry
    offsets: torch.Tensor  # (batch,) int64 start of each row in ids
    counts: torch.Tensor  # (batch,) float32 entries per row
    dense: torch.Tensor | None = None  # (batch, d) float32 dense columns (a text encoder's vectors), if any

    @classmethod
    def from_csr(cls, rows: sp.csr_matrix, device: torch.device | str = "cpu", dense: int = 0) -> SparseBatch:
        """Build from a CSR slice (batch, n_features + dense): its last ``dense`` columns become ``dense``."""
        block = None
        if dense:
            block = _to(rows[:, rows.shape[1] - dense:].toarray(), torch.float32, device)
            rows = rows[:, : rows.shape[1] - dense]
        lengths = np.diff(rows.indptr)
        return cls(
            ids=_to(rows.indices, torch.int64, device),
            weights=_to(rows.data, torch.float32, device),
            doc=_to(np.repeat(np.arange(len(lengths)), lengths), torch.int64, device),
            offsets=_to(rows.indptr[:-1], torch.int64, device),
            counts=_to(lengths, torch.float32, device),
            dense=block,
        )

    @property
    def size(self) -> int:
        """Number of documents in the batch."""
        return int(self.offsets.shape[0])


def labels_batch(rows: sp.csr_matrix, device: torch.device | str = "cpu") -> tuple[SparseBatch, torch.Tensor]:
    """Label sets of a batch as a SparseBatch of label ids and a dense (batch, L) bool target mask."""
    batch = SparseBatch.from_csr(rows, device)
    targets = torch.zeros(rows.shape, dtype=torch.bool, device=device)
    targets[batch.doc, batch.ids] = True
    return batch, targets


class ChannelAttention(nn.Module):
    """SE excitation per word: A = σ(F2 δ(F1 v)); (nnz, C) → (nnz, C) weights in (0, 1)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(channels, channels // reduction)
        self.excite = nn.Linear(channels // reduction, channels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v: (nnz, C) weighted word embeddings → attention (nnz, C)."""
        return torch.sigmoid(self.excite(F.relu(self.squeeze(v))))


class FeatureEncoder(nn.Module):
    """F(x): sparse document → feature embedding x_h, with spatial and channel attention."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Sparse gradients: a step touches only the rows of the batch's words (the trainer gives this
        # matrix RowAdam, model/optim.py), not all vocabulary × C entries, which dominated training time at C=1024.
        self.embedding = nn.Embedding(config.n_features, config.embed_dim, sparse=True)
        nn.init.normal_(self.embedding.weight, std=config.embed_dim**-0.5)
        self.attention = ChannelAttention(config.embed_dim, config.reduction) if config.attention else None
        self.pooling = config.pooling
        self.word_dropout = config.word_dropout
        self.dropout = nn.Dropout(config.dropout)
        self.project = nn.Linear(config.embed_dim, config.latent_dim)
        # The encoder's vector enters x' through its own weights, with no bias: x' stays a sum of inputs.
        self.dense = nn.Linear(config.dense_features, config.embed_dim, bias=False) if config.dense_features else None

    def pooled(self, batch: SparseBatch) -> torch.Tensor:
        """x': (batch, C) pooled, re-scaled word embeddings."""
        weights = batch.weights
        if self.training and self.word_dropout > 0:
            weights = weights * (torch.rand_like(weights) >= self.word_dropout)
        if self.attention is None:  # "No attn": V' pooled directly, one fused gather-and-sum
            summed = F.embedding_bag(batch.ids, self.embedding.weight, batch.offsets,
                                     mode="sum", per_sample_weights=weights, sparse=True)
        else:
            weighted = self.embedding(batch.ids) * weights[:, None]  # V': (nnz, C)
            rescaled = weighted * self.attention(weighted)  # M = V' ∘ A: (nnz, C)
            summed = rescaled.new_zeros(batch.size, rescaled.shape[1]).index_add_(0, batch.doc, rescaled)
        if self.pooling == "mean":
            summed = summed / batch.counts.clamp(min=1.0)[:, None]
        if self.dense is not None:
            if batch.dense is None:
                raise ValueError("this model reads a text encoder's vectors: build batches with RankAE.batch")
            summed = summed + self.dense(batch.dense)
        return summed

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        """x_h: (batch, h)."""
        return self.latent(self.pooled(batch))

    def latent(self, pooled: torch.Tensor) -> torch.Tensor:
        """x_h = F(x) from x' (batch, C) → (batch, h)."""
        return self.project(self.dropout(pooled))


class TagHead(nn.Module):
    """Label logits straight from the pooled embedding x': (batch, C) → (batch, L), one ReLU layer deep."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.embed_dim))
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.embed_dim, config.n_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled x': (batch, C) → logits (batch, L)."""
        return self.out(self.dropout(F.relu(pooled + self.bias)))


class LabelEncoder(nn.Module):
    """E(y): label set → y_h via two FC layers; the first is a sum of label columns (y is sparse)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.first = nn.EmbeddingBag(config.n_labels, config.label_hidden, mode="sum")
        nn.init.normal_(self.first.weight, std=config.label_hidden**-0.5)
        self.bias = nn.Parameter(torch.zeros(config.label_hidden))
        self.dropout = nn.Dropout(config.dropout)
        self.second = nn.Linear(config.label_hidden, config.latent_dim)

    def forward(self, labels: SparseBatch) -> torch.Tensor:
        """labels: SparseBatch of label ids → y_h (batch, h)."""
        inner = self.first(labels.ids, labels.offsets) + self.bias
        return self.second(self.dropout(F.relu(inner)))


class LabelDecoder(nn.Module):
    """D(h): latent → label logits via two FC layers; (batch, h) → (batch, L)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.first = nn.Linear(config.latent_dim, config.label_hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.second = nn.Linear(config.label_hidden, config.n_labels)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: (batch, h) → logits (batch, L)."""
        return self.second(self.dropout(F.relu(self.first(latent))))


class RankAE(nn.Module):
    """The whole model: ``scores`` for inference, ``loss`` for training."""

    label_rows: torch.Tensor  # (L, h) PMI label embedding, the pmi-cosine head's fixed label rows

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.features = FeatureEncoder(config)
        if config.head == "pmi-cosine":
            # Filled by init_label_embedding (training) or load_state_dict (a checkpoint).
            self.register_buffer("label_rows", torch.zeros(config.n_labels, config.latent_dim))
        else:
            self.encoder = LabelEncoder(config)
            self.decoder = LabelDecoder(config)
        self.tag_head = TagHead(config) if config.tag_head else None

    def batch(self, rows: sp.csr_matrix, device: torch.device | str = "cpu") -> SparseBatch:
        """Input rows (batch, n_features + dense_features [+ more]) as this model reads them: columns after its
        own belong to what is served beside it (an encoder vector's layer, model/vector_head.py)."""
        reads = self.config.n_features + self.config.dense_features
        return SparseBatch.from_csr(rows[:, :reads] if rows.shape[1] > reads else rows, device,
                                    self.config.dense_features)

    def init_label_prior(self, frequency: np.ndarray) -> None:
        """Start the output biases of each BCE-trained head (D under BCE-AE, the tag head) at each label's
        log-odds; frequency: (L,) share of documents with the label. Margin-trained heads keep theirs.

        Under BCE, zero biases put every logit at σ = 0.5 against targets that are almost all 0, so the first
        steps push the whole decoder towards "no label". Measured on cooking: from zero biases D(E(y)) never
        got past the label priors (train P@1 9% after 2 epochs, BCE-AE test P@1 7%); starting at the priors
        (the prior initialisation of Lin et al., "Focal Loss", 2017) it reached 48% in the same 2 epochs.
        """
        prior = log_odds(frequency)
        with torch.no_grad():
            if self.config.loss == "bce" and self.config.head == "rank-ae":
                self.decoder.second.bias.copy_(prior)
            if self.tag_head is not None and self.config.tag_head_loss == "bce":
                self.tag_head.out.bias.copy_(prior)

    def init_label_embedding(self, embedding: np.ndarray) -> None:
        """Use a PMI label embedding (L, k): the cosine head's label rows, or E/D's initial label weights."""
        rows = torch.as_tensor(embedding, dtype=torch.float32)
        with torch.no_grad():
            if self.config.head == "pmi-cosine":
                self.label_rows.copy_(rows[:, : self.config.latent_dim])
                return
            # Label l's column of E's first layer and row of D's last layer start at its PMI embedding,
            # rescaled to the default initialisation's spread so training dynamics stay comparable.
            k = min(rows.shape[1], self.config.label_hidden)
            for weight in (self.encoder.first.weight, self.decoder.second.weight):
                scale = weight.std() / rows[:, :k].std().clamp(min=1e-12)
                weight[:, :k] = rows[:, :k] * scale

    def scores(self, batch: SparseBatch) -> torch.Tensor:
        """ŷ: (batch, L) label scores, higher is better: a·σ(D(F(x))) + (1 − a)·σ(tag head), a = ``ae_share``
        (σ(D(F(x))), or the cosine head's scores, alone for a model without a tag head)."""
        pooled = self.features.pooled(batch)
        head, share = self.tag_head, self.config.ae_share
        if head is None or share >= 1.0:
            return self._ae_scores(self.features.latent(pooled))
        tags = torch.sigmoid(head(pooled))
        if share <= 0.0:
            return tags
        return blend(self._ae_scores(self.features.latent(pooled)), tags, share)

    def head_scores(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(σ(D(F(x))) or the cosine head's scores, σ(tag head) or None without one): each (batch, L)."""
        pooled = self.features.pooled(batch)
        tags = torch.sigmoid(self.tag_head(pooled)) if self.tag_head is not None else None
        return self._ae_scores(self.features.latent(pooled)), tags

    def _ae_scores(self, x_h: torch.Tensor) -> torch.Tensor:
        if self.config.head == "pmi-cosine":
            return F.normalize(x_h, dim=1) @ F.normalize(self.label_rows, dim=1).T
        return torch.sigmoid(self.decoder(x_h))

    def loss(self, batch: SparseBatch, labels: SparseBatch, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training loss (key ``"loss"``) and its parts; targets: (batch, L) bool."""
        pooled = self.features.pooled(batch)
        parts = self._autoencoder_loss(self.features.latent(pooled), labels, targets)
        if self.tag_head is not None:
            parts["tags"] = self._ranking(self.tag_head(pooled), targets, self.config.tag_head_loss)
            parts["loss"] = parts["loss"] + parts["tags"]
        return parts

    def _autoencoder_loss(self, x_h: torch.Tensor, labels: SparseBatch,
                          targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.config.head == "pmi-cosine":
            target = F.embedding_bag(labels.ids, self.label_rows, labels.offsets, mode="sum")  # M·E
            return {"loss": cosine_loss(x_h, target)}
        y_h = self.encoder(labels)
        ae = self._ranking(self.decoder(y_h), targets, self.config.loss)  # D rebuilds y from y_h (§2.2)
        latent = latent_loss(x_h, y_h)
        parts = {"loss": latent + self.config.lambda_ae * ae, "latent": latent, "ae": ae}
        if self.config.lambda_direct > 0:  # not in the paper: also rank D(F(x)), what inference scores
            parts["direct"] = self._ranking(self.decoder(x_h), targets, self.config.loss)
            parts["loss"] = parts["loss"] + self.config.lambda_direct * parts["direct"]
        return parts

    def _ranking(self, logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
        """L_ae on logits (batch, L): margin ranking, or BCE (the BCE-AE ablation, and the tag head).

        The margin applies to logits, not σ(logits): on saturated sigmoid outputs it barely trains.
        """
        if loss == "bce":
            return bce_loss(logits, targets)
        return margin_ranking_loss(logits, targets, self.config.margin, self.config.margin_reduction)


@dataclass(frozen=True)
class Partner:
    """A second network served beside a model, with its own neighbour scores: the served score is
    (1 − weight)·the model's + weight·the partner's. With a text encoder, the network that reads the encoder's
    vector partners the tf-idf network beside a layer over it, where validation prefers the two together."""

    model: RankAE
    neighbours: Neighbours | None
    weight: float


def predict_topk(model: RankAE, x: sp.csr_matrix, k: int, batch_size: int = 512,
                 device: torch.device | str | None = None,
                 neighbours: Neighbours | None = None,
                 bias: torch.Tensor | None = None,
                 head: VectorHead | None = None,
                 partner: Partner | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k label ids and scores, best first, for rows of x (n, n_features): two (n, k') arrays, k' = min(k, L).
    The scores are as served (``served_scores``); ``bias`` (L,) is then added (model.boost: new labels' boost)."""
    device = device or next(model.parameters()).device
    k = min(k, model.config.n_labels)
    model.eval()
    ids, scores = [], []
    added = None if bias is None else bias.to(device)  # no copy when it already lives there (Tagger's)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            served = served_scores(model, x[start:start + batch_size], device, neighbours, head, partner)
            if added is not None:
                served = served + added
            top = torch.topk(served, k, dim=1)
            ids.append(top.indices.cpu().numpy())
            scores.append(top.values.cpu().numpy())
    if not ids:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(ids), np.concatenate(scores)


def served_scores(model: RankAE, rows: sp.csr_matrix, device: torch.device | str,
                  neighbours: Neighbours | None = None, head: VectorHead | None = None,
                  partner: Partner | None = None) -> torch.Tensor:
    """The served scores (batch, L) float32 of featurized ``rows``: the network's, blended with ``neighbours``'
    votes and centroids, then with ``head``'s layer over the encoder vector that ends each row (the network
    and the neighbours read the columns before it), then with ``partner``'s scores (it reads every column)."""
    words, vectors = head.split(rows) if head is not None else (rows, None)
    served = model.scores(model.batch(words, device)).float()
    if neighbours is not None:
        served = neighbours.blend(served, words)
    if head is not None and vectors is not None:
        served = head.blend(served, vectors)
    if partner is not None:
        theirs = served_scores(partner.model, rows, device, partner.neighbours)
        served = (1.0 - partner.weight) * served + partner.weight * theirs
    return served


def served_rate(model: RankAE, rows: sp.csr_matrix, neighbours: Neighbours | None = None, batch_size: int = 256,
                repeats: int = 3, device: torch.device | str | None = None, head: VectorHead | None = None) -> float:
    """Documents/s of top-5 prediction, served as with ``neighbours``, over featurized ``rows`` (n, n_features):
    the best of ``repeats`` timed passes after a warm-up batch (pools, index matrices), model-only: tokenising
    is the caller's cost. The best pass, not the mean, so that a moment's load elsewhere does not count."""
    predict_topk(model, rows[:batch_size], 5, batch_size, device, neighbours, head=head)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predict_topk(model, rows, 5, batch_size, device, neighbours, head=head)
        best = min(best, time.perf_counter() - started)
    return rows.shape[0] / max(best, 1e-9)


def predict_scores(model: RankAE, x: sp.csr_matrix, batch_size: int = 512,
                   device: torch.device | str | None = None, neighbours: Neighbours | None = None,
                   head: VectorHead | None = None) -> np.ndarray:
    """The network's scores ŷ (n, L) float32 for rows of x (n, n_features), on the CPU; served as with
    ``neighbours`` and ``head`` when given (``served_scores``)."""
    device = device or next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        parts = [served_scores(model, x[start:start + batch_size], device, neighbours, head).cpu().numpy()
                 for start in range(0, x.shape[0], batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.config.n_labels), dtype=np.float32)


def blend(ae: torch.Tensor, tags: torch.Tensor, share: float) -> torch.Tensor:
    """The served score a·σ(D(F(x))) + (1 − a)·σ(tag head), a = ``share``; ae, tags: (batch, L)."""
    return share * ae + (1.0 - share) * tags


def blend_topk(model: RankAE, x: sp.csr_matrix, k: int, shares: tuple[float, ...], batch_size: int = 512,
               device: torch.device | str | None = None) -> dict[float, np.ndarray]:
    """Top-k label ids (n, k') of rows x (n, n_features) for each decoder share a of the blended score
    a·σ(D(F(x))) + (1 − a)·σ(tag head), from one forward pass per batch; a model without a tag head
    has one ranking, given for every share."""
    device = device or next(model.parameters()).device
    k = min(k, model.config.n_labels)
    model.eval()
    ids: dict[float, list[np.ndarray]] = {share: [] for share in shares}
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            ae, tags = model.head_scores(model.batch(x[start:start + batch_size], device))
            for share in shares:
                blended = ae if tags is None else blend(ae, tags, share)
                ids[share].append(torch.topk(blended.float(), k, dim=1).indices.cpu().numpy())
    return {share: np.concatenate(rows) if rows else np.zeros((0, k), dtype=np.int64)
            for share, rows in ids.items()}
