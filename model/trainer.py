"""Training a model: what ``tagger train`` builds, and everything its checkpoint needs.

``train`` fits the featurizer and label set on the training documents, holds out a validation split
(unless one is given; at least ``min_valid`` documents of a small corpus), optionally corrupts the training
labels (experiments only), trains the network (``model.epochs``), chooses on validation what is served beside
it (neighbour scores; with a text encoder, which of the two encoder models), and with ``refit`` (the default)
then retrains on all the training documents for the chosen epoch count. ``feedback_corpora`` gives the
corrections learner that same validation split as its held-out set.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from model.checkpoint import HeldoutRanking, TrainedModel
from model.config import ModelConfig, TrainConfig
from model.cost import served_cost
from model.data import Corpus, label_matrix
from model.device import resolve_device
from model.encoder import TUNED_FILE, Tuned, load_encoder, require_encoder, save_tuned
from model.epochs import EpochLoop, Progress, fit, fit_blind, fit_folds
from model.errors import ConfigError, DataError
from model.label_embedding import label_embedding
from model.metrics import evaluate
from model.neighbours import MAX_DOC_FREQ, Fold, Neighbours
from model.neighbours import SETTINGS as NEIGHBOUR_SETTINGS
from model.neighbours import choose as choose_neighbours
from model.noise import add_label_noise
from model.rank_ae import Partner, RankAE, predict_scores, predict_topk
from model.text import Featurizer
from model.vector_head import VectorHead, best_weight, choose_share, fit_layer

__all__ = ["CHOICE_ENTRIES", "MAX_VALID_SHARE", "build_model", "choice_rows", "corpus_labels", "cross_validated",
           "feedback_corpora", "holdout_share", "split_validation", "train", "validation_folds"]

log = logging.getLogger(__name__)


def corpus_labels(corpus: Corpus) -> list[str]:
    """Label set of a corpus, most frequent first (ties by name), so label ids are reproducible."""
    counts: dict[str, int] = {}
    for doc_labels in corpus.labels:
        for name in set(doc_labels):
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        raise DataError("the training documents carry no label at all")
    return sorted(counts, key=lambda name: (-counts[name], name))


def split_validation(corpus: Corpus, fraction: float, seed: int) -> tuple[Corpus, Corpus]:
    """A seeded random (train, validation) split of a corpus."""
    order = np.random.default_rng(seed).permutation(len(corpus))
    n_valid = max(1, round(fraction * len(corpus)))
    if n_valid >= len(corpus):
        raise DataError(f"{len(corpus)} documents are too few to hold out a validation split")
    return corpus.subset(np.sort(order[n_valid:])), corpus.subset(np.sort(order[:n_valid]))


# The most of a small corpus the validation floor (``TrainConfig.min_valid``) holds out.
MAX_VALID_SHARE = 0.3


def holdout_share(n: int, config: TrainConfig) -> float:
    """The share of ``n`` training documents ``train`` holds out for validation: ``valid_fraction``, raised for a
    small corpus so that at least ``min_valid`` documents are held out, up to ``MAX_VALID_SHARE``.

    >>> config = TrainConfig()  # valid_fraction 0.1, min_valid 100
    >>> [holdout_share(n, config) for n in (10_000, 1_000, 500, 150)]
    [0.1, 0.1, 0.2, 0.3]
    """
    return max(config.valid_fraction, min(MAX_VALID_SHARE, config.min_valid / max(n, 1)))


def cross_validated(n: int, config: TrainConfig) -> bool:
    """Whether ``train`` chooses the epoch count and blends of ``n`` documents by cross-validation.

    >>> config = TrainConfig()  # cv_folds 3, cv_min_docs 1,000, cv_max_docs 8,000
    >>> cross_validated(500, config), cross_validated(2_000, config), cross_validated(9_000, config)
    (False, True, False)
    >>> cross_validated(2_000, dataclasses.replace(config, refit=False))  # a fold's network would be served
    False
    """
    return (config.cv_folds > 1 and config.cv_min_docs <= n <= config.cv_max_docs and config.refit
            and not config.encoder)


def validation_folds(corpus: Corpus, config: TrainConfig) -> list[tuple[Corpus, Corpus]]:
    """``config.cv_folds`` (fit, validation) splits of ``corpus`` whose validation parts are consecutive runs of
    the seeded permutation ``split_validation`` draws: the first fold holds out what one split of up to
    1/cv_folds of the documents would, and more.

    >>> corpus = Corpus([str(i) for i in range(9)], [["a"]] * 9)
    >>> [len(valid) for _, valid in validation_folds(corpus, TrainConfig())]
    [3, 3, 3]
    """
    order = np.random.default_rng(config.seed).permutation(len(corpus))
    bounds = np.linspace(0, len(corpus), config.cv_folds + 1).round().astype(int)
    folds = []
    for start, stop in itertools.pairwise(bounds):
        held = np.zeros(len(corpus), dtype=bool)
        held[order[start:stop]] = True
        folds.append((corpus.subset(np.flatnonzero(~held)), corpus.subset(np.flatnonzero(held))))
    return folds


def _internal_split(corpus: Corpus, config: TrainConfig) -> tuple[Corpus, Corpus]:
    """The (fit, validation) split ``train`` makes when it is given no validation corpus, and the learner's
    held-out set and replay (``feedback_corpora``); with cross-validation its validation part lies within the
    first fold's, so that fold's network, which ranks it before the refit, never trained on it."""
    return split_validation(corpus, holdout_share(len(corpus), config), config.seed)


def feedback_corpora(corpus: Corpus, config: TrainConfig, replay_size: int = 5000) -> dict[str, Corpus]:
    """What the corrections learner needs, saved with a text model: the validation split as the fixed
    held-out set, and a seeded sample of the training documents to replay while fine-tuning. ``config`` is the
    trained model's (``TrainedModel.train_config``), which records whether the refit was made.

    A refit model has trained on every document, so its split is saved as "refit_heldout": judging candidates
    against it on memorised documents would punish any change (measured: held-out P@1 84 against 48 on unseen
    ones), and the learner judges them there against the ranking the model gave them before its refit
    (``TrainedModel.before_refit``, which ``train`` makes for text corpora).
    """
    if corpus.texts is None:
        return {}
    fit, heldout = _internal_split(corpus, config)
    picks = np.random.default_rng(config.seed).permutation(len(fit))[:replay_size]
    corpora = {"replay": fit.subset(np.sort(picks))}
    # A refit model trained on the split too: saved under its own name, so that the learner judges candidates
    # there against the model before its refit.
    corpora["refit_heldout" if config.refit else "heldout"] = heldout
    return corpora


def fit_featurizer(corpus: Corpus, config: TrainConfig, tuned: Tuned | None = None) -> Featurizer:
    """Fit the text vocabulary or feature weighting on training documents (the text encoder with ``tuned``'s
    weights, when given)."""
    if corpus.texts is not None:
        return Featurizer.fit_text(corpus.texts, config.min_df, config.max_vocab, config.encoder, tuned)
    if config.encoder:
        raise ConfigError(f"the {config.encoder} encoder reads raw text; these documents are feature rows")
    return Featurizer.fit_matrix(corpus.features)


def train(train_corpus: Corpus, model_config: ModelConfig, train_config: TrainConfig,
          valid_corpus: Corpus | None = None, device: str | None = None,
          progress: Progress = "off", label_names: Sequence[str] | None = None,
          tuned_encoder: Tuned | None = None) -> TrainedModel:
    """Train Rank-AE (or a variant) and return the state with the best validation P@1.

    With ``train_config.refit`` (the default) and no ``valid_corpus``, the epoch count is chosen on the internal
    validation split, then a fresh model is trained for that many epochs on all of ``train_corpus`` (paper §3.1).
    ``label_names`` fixes the label set and its order (the learner keeps a live model's label ids and appends new
    ones); by default it is the training documents' labels, most frequent first. ``progress``: a bar on the
    terminal ("bar"), one log line per epoch ("log", for logs that are files: a job's, a container's), or neither.
    With ``train_config.encoder_epochs`` the text encoder is first fine-tuned on the fit split's labels, unless
    ``tuned_encoder`` gives weights to use as they are (a learner's round keeps its live model's).
    """
    fit_corpus, refit, folds = train_corpus, False, 1
    if valid_corpus is None:
        fit_corpus, valid_corpus = _internal_split(train_corpus, train_config)
        refit = train_config.refit
        if cross_validated(len(train_corpus), train_config):
            folds = train_config.cv_folds
            label_names = label_names if label_names is not None else corpus_labels(train_corpus)  # one label set
            log.info("%d training documents: the epoch count and blends chosen by %d-fold cross-validation "
                     "(--cv-folds), then the model refit on all of them", len(train_corpus), folds)
        elif holdout_share(len(train_corpus), train_config) > train_config.valid_fraction:
            log.info("%d training documents: %d of them (at least %d, --min-valid) held out for validation%s",
                     len(train_corpus), len(valid_corpus), train_config.min_valid,
                     ", then given back: the model is refit on all of them" if refit else "")
    heldout = valid_corpus  # with a refit, the learner's held-out set (feedback_corpora), ranked before it
    cross = validation_folds(train_corpus, train_config) if folds > 1 else []
    if cross:
        fit_corpus, valid_corpus = cross[0]
    target = resolve_device(device)
    if tuned_encoder is None and train_config.encoder_epochs:
        tuned_encoder = _tune(fit_corpus, valid_corpus, train_config, target, label_names)
    kept_texts = len(train_corpus) if refit and train_corpus.texts is not None else 0
    before_refit = None
    with _remembered(train_config.encoder, target, tuned_encoder, kept_texts):
        run = _Run.prepare(fit_corpus, model_config, train_config, target, label_names, tuned_encoder)
        x_valid = run.featurizer.transform(valid_corpus.inputs)
        y_valid = label_matrix(valid_corpus.labels, run.names)
        x_heldout = run.featurizer.transform(heldout.inputs) if cross else x_valid  # featurized once
        if cross:
            others = [(_Run.prepare(fit_part, model_config, train_config, target, label_names), held)
                      for fit_part, held in cross[1:]]
            built = _cross_chosen(run, others, x_valid, y_valid, progress)
            # accepted with what it serves on the split the learner holds out, as a model of one split is
            built.metrics = evaluate(_served_top5(built, x_heldout), label_matrix(heldout.labels, run.names))
        else:
            built = _chosen(run, model_config, x_valid, y_valid, progress)
        # an epoch of the history is every fold's: a refit epoch is about n / (folds · fit documents) of one
        scale = len(train_corpus) / len(fit_corpus) / folds
        if refit and not _refit_fits(built, train_config.time_budget_s, scale):
            refit = False  # recorded, so that the validation split is saved as a held-out set never trained on
            built.config = dataclasses.replace(built.config, refit=False)
        if refit:
            top5, fit_names = _served_top5(built, x_heldout), run.names
            run = _Run.prepare(train_corpus, model_config, train_config, target, label_names, tuned_encoder)
            built = _refit(run, built, model_config, _max_doc_freq(run), progress)
            if kept_texts:  # what the corrections learner judges candidates against on this split (feedback_corpora)
                before_refit = _ranking(heldout.ids, top5, fit_names, run.names)
    return TrainedModel(built.loop.model.eval(), run.featurizer, run.names, built.config, built.metrics,
                        built.history, run.label_counts, built.loop.x.shape[0], built.neighbours, head=built.head,
                        partner=_partner(built), before_refit=before_refit)


def _ranking(ids: Sequence[str], top5: np.ndarray, fit_names: Sequence[str], names: Sequence[str]) -> HeldoutRanking:
    """Documents ``ids`` ranked ``top5`` (n, 5) by the run before the refit, in the refit model's label ids: each
    run numbers the labels by their frequency in its own documents (unless the caller fixed them)."""
    final = {name: i for i, name in enumerate(names)}
    return HeldoutRanking(tuple(ids), np.array([final[name] for name in fit_names], dtype=np.int64)[top5])


def _refit_fits(built: _Built, budget: float, scale: float) -> bool:
    """Whether a refit of ``built`` (its networks' kept epoch counts, each epoch over ``scale`` times as many
    documents as the epochs just run, timed by those) ends within ``budget`` seconds of epochs (0: no limit)."""
    if not budget:
        return True
    runs = [built] if built.partner is None else [built, built.partner]
    spent = sum(epoch["seconds"] for run in runs for epoch in run.history)
    needed = scale * sum(run.epoch * _per_epoch(run.history) for run in runs)
    if spent + needed <= budget:
        return True
    log.info("no refit: it would take about %.0f s after %.0f s of epochs, past the time budget of %.0f s "
             "(--time-budget-s); the model trained without the validation split is kept", needed, spent, budget)
    return False


def _per_epoch(history: Sequence[dict[str, float]]) -> float:
    """Mean seconds of the epochs in ``history`` (validation included), 0 for none."""
    return sum(epoch["seconds"] for epoch in history) / len(history) if history else 0.0


def _served_top5(built: _Built, x: sp.csr_matrix) -> np.ndarray:
    """The top 5 label ids (n, 5) of rows ``x`` (n, features) as ``built`` would serve them."""
    return predict_topk(built.loop.model, x, 5, device=built.loop.device, neighbours=built.neighbours,
                        head=built.head, partner=_partner(built))[0]


def _partner(built: _Built) -> Partner | None:
    """The second network ``built`` serves beside its first, with its weight (None without one)."""
    if built.partner is None:
        return None
    return Partner(built.partner.loop.model.eval(), built.partner.neighbours, built.partner_weight)


@contextlib.contextmanager
def _remembered(encoder: str, device: torch.device, tuned: Tuned | None, texts: int) -> Iterator[None]:
    """While a run that refits encodes its documents (the fit split, the validation split, then all of them
    again), the text encoder keeps their vectors, so that each is encoded once: ~60 documents/s on 2 CPU cores.
    Nothing to do without an encoder, or with ``texts`` 0; a larger memory set by the caller is left as it was."""
    if not encoder or not texts:
        yield
        return
    loaded = load_encoder(encoder, device, tuned=tuned)
    before = loaded.keeps
    loaded.remember(max(before, texts))
    try:
        yield
    finally:
        loaded.remember(before)


def _max_doc_freq(run: _Run) -> float:
    """Text rows are sparse, and their most common words make the neighbours' similarity product dense; a feature
    matrix (dense columns, or words as given) is indexed whole."""
    return MAX_DOC_FREQ if run.featurizer.kind == "text" else 1.0


def _chosen(run: _Run, model_config: ModelConfig, x_valid: sp.csr_matrix, y_valid: sp.csr_matrix,
            progress: Progress) -> _Built:
    """``run``'s network trained and what is served beside it, each chosen on the validation rows and labels."""
    max_doc_freq = _max_doc_freq(run)
    use = run.loop.config.encoder_use if run.featurizer.dense_features else "network"
    if use == "layer":
        return _beside_layer(run, model_config, x_valid, y_valid, max_doc_freq, progress)
    built = _built(run.loop, x_valid, y_valid, max_doc_freq, progress)
    if use == "choose":
        built = _paired(built, _beside_layer(run, model_config, x_valid, y_valid, max_doc_freq, progress),
                        x_valid, y_valid)
    return built


@dataclass
class _Built:
    """A network trained on the fit split and what is served beside it, each chosen on validation."""

    loop: EpochLoop
    config: TrainConfig  # the run's, with the votes' affordability recorded
    history: list[dict[str, float]]
    epoch: int  # the epoch kept
    metrics: dict[str, float]  # validation metrics of the served model
    neighbours: Neighbours | None = None
    head: VectorHead | None = None  # a layer over the encoder's vector, beside a network that does not read it
    head_epochs: int = 0  # that layer's epochs, kept on validation
    partner: _Built | None = None  # the network reading the encoder's vector, served beside this one
    partner_weight: float = 0.0  # its weight in the served score


def _paired(read: _Built, beside: _Built, x_valid: sp.csr_matrix, y_valid: sp.csr_matrix) -> _Built:
    """Of the network reading the encoder's vector (``read``), the tf-idf network beside a layer over it
    (``beside``), and the two served together, (1 − w)·beside + w·read, the best on validation (P@1, then
    nDCG@5; on a tie one model alone, ``read`` first): w from ``SHARES``, chosen on a sample of the validation
    rows for large label sets, as the neighbours' weights are."""
    rows = choice_rows(x_valid.shape[0], y_valid.shape[1], read.loop.config.seed)
    sample, y_sample = (x_valid, y_valid) if rows is None else (x_valid[rows], y_valid[rows])
    theirs = predict_scores(read.loop.model, sample, device=read.loop.device, neighbours=read.neighbours)
    ours = predict_scores(beside.loop.model, sample, device=beside.loop.device, neighbours=beside.neighbours,
                          head=beside.head)
    weight, _ = best_weight(theirs, ours, y_sample, prefer=lambda w: (w in (0.0, 1.0), w))
    log.info("validation P@1 %.2f%% with the encoder's vector read by the network, %.2f%% with the tf-idf network "
             "beside a layer over it (network share %.1f); kept %s", 100 * read.metrics["p@1"],
             100 * beside.metrics["p@1"], beside.head.share if beside.head else 1.0,
             "the first" if weight == 1.0 else "the second" if weight == 0.0 else f"both, the first at weight {weight}")
    # Recorded with the model, as the votes' affordability is: a learner's round keeps its live model's form
    # (one network to train, not two, where one was kept); ``tagger train`` run again chooses afresh.
    if weight in (0.0, 1.0):
        chosen = read if weight == 1.0 else beside
        chosen.config = dataclasses.replace(chosen.config, encoder_use="network" if chosen is read else "layer")
        return chosen
    paired = dataclasses.replace(beside, partner=read, partner_weight=weight)
    paired.metrics = evaluate(_served_top5(paired, x_valid), y_valid)
    return paired


def _built(loop: EpochLoop, x_valid: sp.csr_matrix, y_valid: sp.csr_matrix, max_doc_freq: float,
           progress: Progress) -> _Built:
    """Train ``loop``'s network, keep its best epoch, and choose the neighbour scores beside it."""
    history, best = fit(loop, x_valid, y_valid, progress)
    return _kept([loop], history, best, [x_valid], [y_valid], max_doc_freq)


def _cross_chosen(run: _Run, others: Sequence[tuple[_Run, Corpus]], x_valid: sp.csr_matrix, y_valid: sp.csr_matrix,
                  progress: Progress) -> _Built:
    """The first fold's network (``run``, validated on rows ``x_valid``) trained in step with the other folds'
    (each with its validation documents), its epoch and decoder share chosen on all folds' validation documents
    together, and the neighbour scores beside it likewise (its own training rows indexed)."""
    x_folds = [x_valid, *(other.featurizer.transform(held.inputs) for other, held in others)]
    y_folds = [y_valid, *(label_matrix(held.labels, other.names) for other, held in others)]
    loops = [run.loop, *(other.loop for other, _ in others)]
    history, best = fit_folds(loops, x_folds, y_folds, progress)
    return _kept(loops, history, best, x_folds, y_folds, _max_doc_freq(run))


def _kept(loops: Sequence[EpochLoop], history: list[dict[str, float]], best: dict[str, Any],
          x_valid: Sequence[sp.csr_matrix], y_valid: Sequence[sp.csr_matrix], max_doc_freq: float) -> _Built:
    """The first of ``loops``' networks at the best epoch of ``history`` and the neighbour scores chosen beside
    it, on every loop's validation rows x_valid[i] (n_i, F) and labels y_valid[i] (n_i, L) (the other loops:
    the folds of a cross-validation)."""
    for loop, state in zip(loops, best["states"], strict=True):
        loop.model.load_state_dict(state)
        loop.model.config = dataclasses.replace(loop.model.config, ae_share=best["share"])
    loop = loops[0]
    log.info("kept epoch %d (validation P@1 %.2f%%); the network's score: decoder share %.1f, tag head %.1f",
             best["epoch"], 100 * best["p@1"], best["share"], 1 - best["share"])
    built = _Built(loop, loop.config, history, best["epoch"], best["metrics"])
    if not loop.config.neighbours:
        return built
    affordable = _votes_affordable(loop, x_valid[0], max_doc_freq, loop.config)
    built.config = dataclasses.replace(loop.config, votes_affordable=affordable)  # recorded with the model
    built.neighbours = _neighbours(loops, x_valid, y_valid, max_doc_freq, affordable)
    if built.neighbours is not None:  # what the model is accepted with is what it serves: the blend
        built.metrics = evaluate(_served_top5(built, x_valid[0]), y_valid[0])
    return built


def _words_loop(run: _Run, model_config: ModelConfig) -> EpochLoop:
    """A fresh tf-idf network over ``run``'s rows without their encoder columns, the same labels and settings."""
    n_words = run.featurizer.n_features
    torch.manual_seed(run.loop.config.seed)
    config = _sized(model_config, n_words, len(run.names))
    model = build_model(config, run.loop.y, run.loop.config.seed).to(run.loop.device)
    log.info("training %s on %d documents (%d features, %d labels), the encoder's vector left to a layer beside it",
             config.head, run.loop.x.shape[0], n_words, config.n_labels)
    return EpochLoop(model, run.loop.x[:, :n_words], run.loop.y, run.loop.config, run.loop.device)


def _beside_layer(run: _Run, model_config: ModelConfig, x_valid: sp.csr_matrix, y_valid: sp.csr_matrix,
                  max_doc_freq: float, progress: Progress) -> _Built:
    """The tf-idf network (the encoder unread) served beside a logistic layer over the encoder's vector, the
    layer's share chosen on validation (on a sample of it for large label sets, as the neighbours' weights)."""
    n_words = run.featurizer.n_features
    built = _built(_words_loop(run, model_config), x_valid[:, :n_words], y_valid, max_doc_freq, progress)
    layer, built.head_epochs = fit_layer(run.loop.x[:, n_words:].toarray(), run.loop.y, run.loop.config.seed,
                                         x_valid[:, n_words:].toarray(), y_valid)
    rows = choice_rows(x_valid.shape[0], y_valid.shape[1], run.loop.config.seed)
    sample = x_valid if rows is None else x_valid[rows]
    network = predict_scores(built.loop.model, sample[:, :n_words], device=built.loop.device,
                             neighbours=built.neighbours)
    built.head, _ = choose_share(layer, network, sample[:, n_words:], y_valid if rows is None else y_valid[rows])
    built.metrics = evaluate(_served_top5(built, x_valid), y_valid)
    return built


def _refit(run: _Run, built: _Built, model_config: ModelConfig, max_doc_freq: float, progress: Progress) -> _Built:
    """``built``'s choices (epochs, shares, neighbour setting) over all of ``run``'s documents."""
    loop = run.loop if built.head is None else _words_loop(run, model_config)
    fit_blind(loop, built.epoch, progress)
    loop.model.config = dataclasses.replace(loop.model.config, ae_share=built.loop.model.config.ae_share)
    refit = dataclasses.replace(built, loop=loop)
    if built.neighbours is not None:
        old = built.neighbours
        refit.neighbours = Neighbours.index(loop.x, loop.y, old.k, old.power, old.share, max_doc_freq, old.centroids)
    if built.head is not None:
        layer, _ = fit_layer(run.loop.x[:, run.featurizer.n_features:].toarray(), loop.y, loop.config.seed,
                             epochs=built.head_epochs)
        refit.head = dataclasses.replace(layer, share=built.head.share)
    if built.partner is not None:
        refit.partner = _refit(run, built.partner, model_config, max_doc_freq, progress)
    return refit


def _tune(fit: Corpus, valid: Corpus, config: TrainConfig, device: torch.device,
          label_names: Sequence[str] | None) -> Tuned:
    """The text encoder fine-tuned on ``fit``'s labels (kept on ``valid``), its weights in a temporary file
    that lives as long as this process (``checkpoint.save`` copies it into the checkpoint)."""
    from model.encoder_tuning import tune_encoder

    if fit.texts is None or valid.texts is None:
        raise ConfigError(f"the {config.encoder} encoder reads raw text; these documents are feature rows")
    names = list(label_names) if label_names is not None else corpus_labels(fit)
    state = tune_encoder(require_encoder(config.encoder), fit.texts, label_matrix(fit.labels, names), valid.texts,
                         label_matrix(valid.labels, names), config.encoder_epochs, device, config.seed)
    folder = Path(tempfile.mkdtemp(prefix="rankae-encoder-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return save_tuned(state, folder / TUNED_FILE)


def _votes_affordable(loop: EpochLoop, x_valid: sp.csr_matrix, max_doc_freq: float, config: TrainConfig) -> bool:
    """Whether the votes may be tried: the answer ``config`` records (a learner's round, from its live model),
    else whether the model served with them keeps ``config.min_docs_per_s`` (0: any rate), counted
    (``model.cost``) over the first validation rows, so that every run and machine makes the same model."""
    if config.votes_affordable is not None:
        return config.votes_affordable
    if config.min_docs_per_s <= 0:
        return True
    # the dearest blend the trainer may choose: the larger (k, power) setting, votes and centroids both served
    dearest = Neighbours.index(loop.x, loop.y, *max(NEIGHBOUR_SETTINGS), share=0.1, max_doc_freq=max_doc_freq,
                               centroids=0.1)
    cost = served_cost(x_valid[:_COUNTED_ROWS], loop.model.config.embed_dim, loop.y.shape[1], dearest)
    affordable = cost.docs_per_s >= config.min_docs_per_s
    log.info("served with neighbour votes: about %.0f documents/s on 2 reference cores (counted: %.0f µs per "
             "document for the network and centroids, %.0f for the votes)%s", cost.docs_per_s, cost.network_us,
             cost.votes_us,
             "" if affordable else f", under the floor of {config.min_docs_per_s:.0f} (--min-docs-per-s): not tried")
    return affordable


def _neighbours(loops: Sequence[EpochLoop], x_valid: Sequence[sp.csr_matrix], y_valid: Sequence[sp.csr_matrix],
                max_doc_freq: float, affordable: bool) -> Neighbours | None:
    """Neighbour votes over the first loop's training rows, when blending them in beats the network on
    validation (every loop's rows x_valid[i], labels y_valid[i], each blended with its own training rows' votes);
    the votes only where ``affordable`` (label centroids alone otherwise)."""
    folds, labels = [], []
    for loop, x, y in zip(loops, x_valid, y_valid, strict=True):
        rows = choice_rows(x.shape[0], loop.y.shape[1], loop.config.seed, CHOICE_ENTRIES)
        if rows is not None:
            log.info("neighbour weights chosen on %d of the %d validation documents (%d labels)", rows.size,
                     x.shape[0], loop.y.shape[1])
            x, y = x[rows], y[rows]
        folds.append(Fold(predict_scores(loop.model, x, device=loop.device), loop.x, loop.y, x))
        labels.append(y)
    chosen = choose_neighbours(folds, sp.vstack(labels).tocsr(), settings=NEIGHBOUR_SETTINGS if affordable else (),
                               max_doc_freq=max_doc_freq)
    if chosen is None:
        log.info("neighbour scores: not used (the network alone is best on validation)")
    else:
        log.info("neighbour scores: k=%d, power %g; weights network %.1f, votes %.1f, label centroids %.1f",
                 chosen.k, chosen.power, chosen.share, chosen.votes_weight, chosen.centroids)
    return chosen


# Validation scores the neighbour choice holds at once, as entries of (documents × labels) float32 matrices:
# the network's, the centroids', the votes' and their blends, about five of them. 2^24 entries is 64 MiB each;
# a million training documents with 13,000 labels (AmazonCat-13K) would otherwise need 100,000 × 13,000, 4.8 GiB
# each, at the end of a training run that took hours.
CHOICE_ENTRIES = 1 << 24


def choice_rows(n_valid: int, n_labels: int, seed: int, entries: int = CHOICE_ENTRIES) -> np.ndarray | None:
    """The validation rows the neighbour weights are chosen on: None (all of them) when the n_valid × n_labels
    scores fit in ``entries``, else a seeded sample of as many rows as fit (at least 1,000), in order.

    >>> choice_rows(500, 100, 0) is None
    True
    >>> rows = choice_rows(50_000, 4_000, 0, entries=8_000_000)
    >>> rows.size, bool(np.all(np.diff(rows) > 0)), int(rows.max()) < 50_000
    (2000, True, True)
    """
    if n_valid * n_labels <= entries:
        return None
    keep = min(n_valid, max(1000, entries // max(n_labels, 1)))
    return np.sort(np.random.default_rng(seed).choice(n_valid, size=keep, replace=False))


# Validation rows the votes' cost is counted over: enough for a stable mean, and a bounded search.
_COUNTED_ROWS = 1024


@dataclass
class _Run:
    """One training run's inputs: featurizer and label set fitted on its documents, and the loop."""

    featurizer: Featurizer
    names: list[str]
    label_counts: list[int]  # clean training documents per label
    loop: EpochLoop

    @classmethod
    def prepare(cls, corpus: Corpus, model_config: ModelConfig, train_config: TrainConfig,
                target: torch.device, label_names: Sequence[str] | None = None, tuned: Tuned | None = None) -> _Run:
        """Fit features (and, unless given, labels) on ``corpus``, build a freshly seeded model and its optimiser."""
        torch.manual_seed(train_config.seed)
        featurizer = fit_featurizer(corpus, train_config, tuned).on(target)
        names = list(label_names) if label_names is not None else corpus_labels(corpus)
        x_train = featurizer.transform(corpus.inputs)
        y_clean = label_matrix(corpus.labels, names)
        y_train = add_label_noise(y_clean, train_config.noise, train_config.seed)
        config = _sized(model_config, featurizer.n_features, len(names), featurizer.dense_features)
        model = build_model(config, y_train, train_config.seed).to(target)
        log.info("training %s on %d documents (%d features, %d labels) on %s", config.head,
                 x_train.shape[0], config.n_features, config.n_labels, target)
        counts = np.asarray(y_clean.sum(axis=0)).ravel().astype(int).tolist()
        return cls(featurizer, names, counts, EpochLoop(model, x_train, y_train, train_config, target))


def _sized(config: ModelConfig, n_features: int, n_labels: int, dense_features: int = 0) -> ModelConfig:
    return ModelConfig.from_dict({**config.to_dict(), "n_features": n_features, "n_labels": n_labels,
                                  "dense_features": dense_features})


def build_model(config: ModelConfig, y_train: sp.csr_matrix, seed: int) -> RankAE:
    """A new model for ``config`` (sized), its label-side initialisation taken from y_train (n, L)."""
    model = RankAE(config)
    if config.head == "pmi-cosine" or config.label_init == "pmi":
        dim = config.latent_dim if config.head == "pmi-cosine" else config.label_hidden
        model.init_label_embedding(label_embedding(y_train, dim, seed))
    model.init_label_prior(np.asarray(y_train.sum(axis=0)).ravel() / max(y_train.shape[0], 1))
    return model
