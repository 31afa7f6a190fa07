"""Self-describing, atomically written model checkpoints.

A checkpoint is a directory::

    config.json    {"format": 1, "version": "...", "created": "...", "model": {...}, "train": {...},
                    "boost": {"labels": [...], "weight": w}}  (boost optional: new labels' served boost)
    vocab.json     the fitted featurizer (tokens, idf, and the text encoder it runs, if any)
    encoder.safetensors  optional: that encoder's fine-tuned weights (vocab.json records their digest)
    labels.json    label names, in label-id order
    weights.pt     the state dict, read back with torch.load(weights_only=True): no code runs on load
    metrics.json   validation metrics the model was accepted with, and the per-epoch history
    neighbours.npz optional: the nearest-neighbour index (training rows, their labels) and its blend setting
    vector_head.npz optional: a layer over the encoder's vector (weight, bias) and the network's share beside it
    partner/       optional: a second network served beside the first (model.json, weights.pt, neighbours.npz),
                   its weight in config.json's "partner" section
    heldout.jsonl  optional: the fixed held-out documents a fine-tuned candidate is judged on
    refit_heldout.jsonl  optional, instead: the same for a model refit on them too (TrainConfig.refit)
    refit_ranking.npz  optional, with it: the top 5 label ids the model gave those documents before its refit
    replay.jsonl   optional: a sample of the training documents, replayed during fine-tuning

It is written into a temporary sibling directory and renamed into place, so a reader sees either the
old checkpoint or the new one, never a half-written one.

This module is the only reader and writer of these files: ``save`` writes them, ``load`` reads the
whole model back, and ``read_meta`` reads what describes it (version, labels, metrics) without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from model.boost import LabelBoost
from model.config import ModelConfig, TrainConfig
from model.data import Corpus, read_jsonl, write_jsonl
from model.encoder import TUNED_FILE
from model.errors import CheckpointError, ConfigError
from model.neighbours import Neighbours
from model.text import Featurizer

if TYPE_CHECKING:  # torch is imported where weights are read or written, so read_meta stays cheap to import
    import torch

    from model.rank_ae import Partner, RankAE
    from model.vector_head import VectorHead

__all__ = ["FORMAT", "Checkpoint", "CheckpointMeta", "HeldoutRanking", "TrainedModel", "load", "load_corpus",
           "load_ranking", "read_meta", "save"]

FORMAT = 1
_FILES = ("config.json", "vocab.json", "labels.json", "weights.pt", "metrics.json")
_META_FILES = ("config.json", "labels.json", "metrics.json")  # what read_meta reads
NEIGHBOURS = "neighbours.npz"
HEAD = "vector_head.npz"
PARTNER = "partner"
RANKING = "refit_ranking.npz"


@dataclass(frozen=True)
class HeldoutRanking:
    """The top 5 label ids a model gave each document of its validation split before it was refit on them: what
    the corrections learner judges candidates against there, since the refit model has memorised those documents
    (docs/results.md, "Small training sets")."""

    ids: tuple[str, ...]  # the documents' ids, in the split's order
    top5: np.ndarray  # (n, 5) int64 label ids, best first


@dataclass
class TrainedModel:
    """A trained model and what travels with it into a checkpoint (what ``save`` writes)."""

    model: RankAE
    featurizer: Featurizer
    label_names: list[str]
    train_config: TrainConfig
    metrics: dict[str, float]  # validation metrics of the kept (best) state
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    label_counts: list[int] = field(default_factory=list)  # training documents per label (for PSP@k)
    n_train: int = 0  # training documents (for PSP@k)
    neighbours: Neighbours | None = None  # nearest-neighbour votes blended into the score, when chosen
    boost: LabelBoost = field(default_factory=LabelBoost)  # new labels' served boost (the learner's choice)
    head: VectorHead | None = None  # a layer over the encoder's vector served beside a network that does not read it
    partner: Partner | None = None  # a second network served beside the first (the one that reads that vector)
    before_refit: HeldoutRanking | None = None  # a refit model's validation split as ranked before the refit


@dataclass(frozen=True)
class CheckpointMeta:
    """What describes a checkpoint, read without loading its weights (see ``read_meta``)."""

    version: str
    created: str  # ISO 8601 time of writing; empty when the checkpoint does not say
    labels: tuple[str, ...]  # label names, in label-id order
    valid_p1: float | None  # validation P@1 the model was accepted with, when recorded
    boost: LabelBoost = field(default_factory=LabelBoost)  # new labels' served boost (none when unreadable)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and everything needed to use it."""

    model: RankAE
    featurizer: Featurizer
    label_names: list[str]
    version: str
    train_config: TrainConfig
    metrics: dict[str, Any]
    neighbours: Neighbours | None = None
    boost: LabelBoost = field(default_factory=LabelBoost)
    head: VectorHead | None = None
    partner: Partner | None = None


def interface_changes(live: Checkpoint, new: Checkpoint) -> list[str]:
    """How ``new`` would change what workers serving ``live`` read and write: its label set (ids, names)
    and its featurizer (input kind, vocabulary or feature count). Empty when they agree."""
    changes = []
    if new.label_names != live.label_names:
        added = len(set(new.label_names) - set(live.label_names))
        dropped = len(set(live.label_names) - set(new.label_names))
        changes.append(f"labels {len(live.label_names)} → {len(new.label_names)} ({added} added, {dropped} dropped"
                       + (", ids reordered)" if not added and not dropped else ")"))
    old_f, new_f = live.featurizer, new.featurizer
    if (old_f.kind, old_f.n_features, old_f.tokens) != (new_f.kind, new_f.n_features, new_f.tokens):
        changes.append(f"featurizer {old_f.kind} with {old_f.n_features} features → {new_f.kind} with "
                       f"{new_f.n_features}" + (" (another vocabulary)" if old_f.kind == new_f.kind else ""))
    if old_f.encoder != new_f.encoder:
        changes.append(f"text encoder {old_f.encoder or 'none'} → {new_f.encoder or 'none'}")
    elif old_f.tuned != new_f.tuned:
        changes.append(f"{old_f.encoder} encoder weights {_weights(old_f)} → {_weights(new_f)}")
    return changes


def _weights(featurizer: Featurizer) -> str:
    return f"fine-tuned {featurizer.tuned.digest}" if featurizer.tuned else "as shipped"


def save(trained: TrainedModel, directory: Path | str, corpora: dict[str, Corpus] | None = None) -> str:
    """Write ``trained`` (and text ``corpora`` such as heldout/replay) atomically; returns the version."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        version = _write_files(trained, staging)
        for name, corpus in (corpora or {}).items():
            write_jsonl(corpus, staging / f"{name}.jsonl")
            _fsync(staging / f"{name}.jsonl")
        _replace_dir(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version


def _write_files(trained: TrainedModel, out: Path) -> str:
    _write_weights(trained.model, out / "weights.pt")
    digest = hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest()[:10]
    now = datetime.now(UTC)
    version = f"{now:%Y%m%dT%H%M%SZ}-{digest}"
    config = {"format": FORMAT, "version": version, "created": now.isoformat(),
              "model": trained.model.config.to_dict(), "train": trained.train_config.to_dict()}
    if trained.boost.labels:
        config["boost"] = trained.boost.to_dict()
    if trained.partner is not None:
        config["partner"] = {"weight": trained.partner.weight}
        _write_partner(trained.partner, out / PARTNER)
    _write_json(out / "config.json", config)
    trained.featurizer.save(out / "vocab.json")
    if trained.featurizer.tuned is not None:
        shutil.copyfile(trained.featurizer.tuned.path, out / TUNED_FILE)
        _fsync(out / TUNED_FILE)
    _write_json(out / "labels.json", trained.label_names)
    _write_json(out / "metrics.json", {"valid": trained.metrics, "history": trained.history,
                                       "label_counts": trained.label_counts, "n_train": trained.n_train})
    if trained.neighbours is not None:
        _write_neighbours(trained.neighbours, out / NEIGHBOURS)
        _fsync(out / NEIGHBOURS)
    if trained.head is not None:
        _write_head(trained.head, out / HEAD)
        _fsync(out / HEAD)
    if trained.before_refit is not None:
        with (out / RANKING).open("wb") as ranking:
            np.savez(ranking, ids=np.array(trained.before_refit.ids, dtype=np.str_), top5=trained.before_refit.top5)
        _fsync(out / RANKING)
    for name in _FILES:
        _fsync(out / name)
    return version


def _write_neighbours(neighbours: Neighbours, path: Path) -> None:
    rows, labels = neighbours.rows, neighbours.labels
    with path.open("wb") as out:  # a file object: np.savez would append ".npz" to a name
        np.savez(out, rows_data=rows.data, rows_indices=rows.indices, rows_indptr=rows.indptr,
                 rows_shape=np.array(rows.shape), labels_indices=labels.indices, labels_indptr=labels.indptr,
                 labels_shape=np.array(labels.shape),
                 setting=np.array([neighbours.k, neighbours.power, neighbours.share, neighbours.centroids],
                                  dtype=np.float64))


def _read_neighbours(path: Path, n_features: int, n_labels: int) -> Neighbours | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            rows = sp.csr_matrix((npz["rows_data"], npz["rows_indices"], npz["rows_indptr"]),
                                 shape=tuple(npz["rows_shape"]))
            labels = sp.csr_matrix((np.ones(len(npz["labels_indices"]), dtype=np.float32), npz["labels_indices"],
                                    npz["labels_indptr"]), shape=tuple(npz["labels_shape"]))
            # (k, power, share, centroid weight); indexes written before the centroids have no fourth
            k, power, share, centroids = [*npz["setting"].tolist(), 0.0][:4]
    except (OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged neighbour index ({err})") from err
    if rows.shape[1] != n_features or labels.shape != (rows.shape[0], n_labels):
        raise CheckpointError(f"{path}: the neighbour index has rows {rows.shape} and labels {labels.shape}, "
                              f"the model reads {n_features} features and {n_labels} labels")
    return Neighbours(rows, labels, int(k), float(power), float(share), float(centroids))


def _write_weights(model: RankAE, path: Path) -> None:
    import torch

    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def _write_partner(partner: Partner, folder: Path) -> None:
    folder.mkdir()
    _write_weights(partner.model, folder / "weights.pt")
    _write_json(folder / "model.json", partner.model.config.to_dict())
    names = ["weights.pt", "model.json"]
    if partner.neighbours is not None:
        _write_neighbours(partner.neighbours, folder / NEIGHBOURS)
        names.append(NEIGHBOURS)
    for name in names:
        _fsync(folder / name)


def _read_partner(directory: Path, raw: Any, featurizer: Featurizer, labels: list[str],
                  device: torch.device | str) -> Partner | None:
    """The partner network a checkpoint names in config.json, read from its folder and checked against the
    checkpoint's featurizer and labels."""
    from model.rank_ae import Partner, RankAE

    folder = directory / PARTNER
    if raw is None:
        return None
    weight = raw.get("weight") if isinstance(raw, dict) else None
    if not isinstance(weight, int | float) or not 0.0 < weight < 1.0 or not folder.is_dir():
        raise CheckpointError(f"{directory}: config.json names a partner network (weight in (0, 1) expected, got "
                              f"{raw!r:.100}) and {folder} must hold it")
    try:
        config = ModelConfig.from_dict(_read_json(folder / "model.json"))
    except (TypeError, AttributeError, ConfigError) as err:
        raise CheckpointError(f"{folder}/model.json: invalid model section ({err})") from err
    _check_sizes(folder, config, featurizer, labels, 0)
    model = RankAE(config)
    model.load_state_dict(_read_weights(folder / "weights.pt", model))
    neighbours = _read_neighbours(folder / NEIGHBOURS, config.n_features + config.dense_features, len(labels))
    return Partner(model.to(device).eval(), neighbours, float(weight))


def _write_head(head: VectorHead, path: Path) -> None:
    with path.open("wb") as out:
        np.savez(out, weight=head.weight.detach().cpu().numpy(), bias=head.bias.detach().cpu().numpy(),
                 share=np.array([head.share], dtype=np.float64))


def _read_head(path: Path, n_labels: int, device: torch.device | str) -> VectorHead | None:
    if not path.is_file():
        return None
    import torch

    from model.vector_head import VectorHead

    try:
        with np.load(path, allow_pickle=False) as npz:
            weight, bias, share = npz["weight"], npz["bias"], float(npz["share"][0])
    except (OSError, KeyError, ValueError, IndexError) as err:
        raise CheckpointError(f"{path}: damaged encoder-vector layer ({err})") from err
    if weight.ndim != 2 or weight.shape[0] != n_labels or bias.shape != (n_labels,) or not 0.0 <= share <= 1.0:
        raise CheckpointError(f"{path}: the encoder-vector layer has weight {weight.shape}, bias {bias.shape} and "
                              f"share {share}; the model has {n_labels} labels and a share in [0, 1]")
    return VectorHead(torch.from_numpy(weight.astype(np.float32)), torch.from_numpy(bias.astype(np.float32)),
                      share).on(device)


def _write_json(path: Path, body: Any) -> None:
    path.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(staging: Path, target: Path) -> None:
    """Move staging into target's place; an old target is renamed away first, then removed."""
    if not target.exists():
        staging.rename(target)
        return
    retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def load(directory: Path | str, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint; anything missing, damaged or inconsistent raises CheckpointError."""
    from model.rank_ae import RankAE

    directory = Path(directory)
    missing = [name for name in _FILES if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory} is not a model checkpoint: missing {', '.join(missing)}")
    config = _read_json(directory / "config.json")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{directory}: checkpoint format {config.get('format')!r}, this version reads "
                              f"{FORMAT}; retrain or use a matching rankae-tagger")
    try:
        model_config = ModelConfig.from_dict(config["model"])
        train_config = TrainConfig.from_dict(config["train"])
    except (KeyError, TypeError, ConfigError) as err:
        raise CheckpointError(f"{directory}/config.json: invalid model or train section ({err})") from err
    featurizer = Featurizer.load(directory / "vocab.json").on(device)
    labels = _read_labels(directory)
    head = _read_head(directory / HEAD, len(labels), device)
    _check_sizes(directory, model_config, featurizer, labels, head.dim if head else 0)
    model = RankAE(model_config)
    model.load_state_dict(_read_weights(directory / "weights.pt", model))
    metrics = _read_json(directory / "metrics.json")
    neighbours = _read_neighbours(directory / NEIGHBOURS, model_config.n_features + model_config.dense_features,
                                  len(labels))
    return Checkpoint(model.to(device).eval(), featurizer, labels, str(config.get("version")),
                      train_config, metrics, neighbours, _read_boost(directory, config.get("boost")), head,
                      _read_partner(directory, config.get("partner"), featurizer, labels, device))


def _read_boost(directory: Path, raw: Any) -> LabelBoost:
    if raw is None:  # written before boosts, or never boosted
        return LabelBoost()
    labels, weight = (raw.get("labels"), raw.get("weight")) if isinstance(raw, dict) else (None, None)
    if (not isinstance(labels, list) or not all(isinstance(name, str) for name in labels)
            or not isinstance(weight, int | float) or weight < 0):
        raise CheckpointError(f"{directory}/config.json: invalid boost section (expected labels: a list of "
                              f"names, weight: a number ≥ 0; got {raw!r:.200})")
    return LabelBoost(tuple(labels), float(weight))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint file ({err})") from err


def _read_labels(directory: Path) -> list[str]:
    labels = _read_json(directory / "labels.json")
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise CheckpointError(f"{directory}/labels.json: expected a list of label names")
    return labels


def _check_sizes(directory: Path, config: ModelConfig, featurizer: Featurizer, labels: list[str],
                 head_dim: int) -> None:
    """The label and feature counts of labels.json, vocab.json, config.json and the encoder-vector layer agree
    (the encoder's vector is read by the network or by the layer beside it, never both)."""
    if len(labels) != config.n_labels:
        raise CheckpointError(f"{directory}: labels.json has {len(labels)} labels, config says {config.n_labels}")
    if featurizer.n_features != config.n_features:
        raise CheckpointError(f"{directory}: vocab.json has {featurizer.n_features} features, "
                              f"config says {config.n_features}")
    if featurizer.dense_features != config.dense_features + head_dim or (head_dim and config.dense_features):
        raise CheckpointError(f"{directory}: vocab.json's encoder gives {featurizer.dense_features} dense features, "
                              f"config says the network reads {config.dense_features} and {HEAD} "
                              f"{head_dim or 'is absent'}")


def _read_weights(path: Path, model: RankAE) -> dict[str, torch.Tensor]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise CheckpointError(f"{path}: unreadable or unsafe weights file ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]})") from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else {}
    if found != expected:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise CheckpointError(f"{path}: weights do not match the model in config.json (first differences: {diff})")
    return state


def read_meta(directory: Path | str) -> CheckpointMeta:
    """A checkpoint's version, creation time, label names, validation P@1 and new-label boost, from its JSON
    files only.

    Cheap (no torch, no weights) and lenient about the rest: ``load`` is what checks a checkpoint whole.
    """
    directory = Path(directory)
    missing = [name for name in _META_FILES if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory} is not a model checkpoint: missing {', '.join(missing)}")
    config = _read_json(directory / "config.json")
    metrics = _read_json(directory / "metrics.json")
    if not isinstance(config, dict) or not isinstance(config.get("version"), str) or not config["version"]:
        raise CheckpointError(f"{directory}/config.json: no version; not a checkpoint written by tagger train")
    valid = metrics.get("valid") if isinstance(metrics, dict) else None
    p1 = valid.get("p@1") if isinstance(valid, dict) else None
    try:
        boost = _read_boost(directory, config.get("boost"))
    except CheckpointError:
        boost = LabelBoost()  # load() names the problem; a listing need not
    return CheckpointMeta(config["version"], str(config.get("created", "")), tuple(_read_labels(directory)),
                          float(p1) if isinstance(p1, int | float) else None, boost)


def load_corpus(directory: Path | str, name: str) -> Corpus | None:
    """A text corpus saved with the checkpoint (e.g. "heldout", "replay"), or None if it has none."""
    path = Path(directory) / f"{name}.jsonl"
    return read_jsonl(path) if path.exists() else None


def load_ranking(directory: Path | str, n_labels: int) -> HeldoutRanking | None:
    """The validation split's ranking before the refit (``TrainedModel.before_refit``), or None if the checkpoint
    has none (it was not refit, or was written before rankings were saved); a damaged one is an error."""
    path = Path(directory) / RANKING
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            ids, top5 = npz["ids"], npz["top5"]
    except (OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged ranking of the refit held-out set ({err})") from err
    if (top5.ndim != 2 or top5.shape != (ids.size, 5) or not np.issubdtype(top5.dtype, np.integer)
            or (top5.size and not 0 <= top5.min() <= top5.max() < n_labels)):
        raise CheckpointError(f"{path}: expected the top 5 label ids (of {n_labels}) of each of {ids.size} "
                              f"documents, got an array of {top5.shape} {top5.dtype}")
    return HeldoutRanking(tuple(str(i) for i in ids.tolist()), top5.astype(np.int64))
