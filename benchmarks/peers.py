"""Peer extreme-multi-label classifiers: the baselines of the quality benchmark.

Each peer is one small ``_fit_*`` function that trains on the data it is given and returns a
*predictor* (test input, k) -> top-k label ids. :func:`_measure` times training and prediction
the same way for every peer, so the timings are comparable.

Feature peers take float32 CSR tf-idf rows (n, n_features) and a binary CSR label matrix
(n, n_labels); fastText takes raw text. The packages are optional (the ``[bench]`` extra); a
missing one raises :class:`PeerUnavailable` naming the pip command.

Settings follow the omikuji README: "Parabel" is omikuji's default (3 trees of balanced 2-means,
hinge-loss linear nodes) and "Bonsai" is unbalanced k-means with k=100 and max_depth=3.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "FEATURE_PEERS",
    "PeerResult",
    "PeerUnavailable",
    "available_peers",
    "run_fasttext",
    "run_feature_peer",
]

log = logging.getLogger(__name__)

N_THREADS = 2  # the benchmark machine has 2 cores (napkinXC uses one: see _fit_plt)
FASTTEXT = "fasttext-ova"

# module to import -> the pip distribution that provides it
_PIP_NAMES = {
    "omikuji": "omikuji",
    "napkinxc.models": "napkinxc",
    "sklearn": "scikit-learn",
    "fasttext": "fasttext-wheel",
}

Predictor = Callable[[Any, int], np.ndarray]  # (test input, k) -> (n_test, k) int64 label ids


class PeerUnavailable(RuntimeError):
    """A peer's package is not installed; the message gives the pip command."""


@dataclass(frozen=True)
class PeerResult:
    """Top-k predictions of one peer on a test set, with its timings."""

    name: str
    topk: np.ndarray  # (n_test, k) int64 label ids, best first, -1 where fewer than k
    train_seconds: float
    predict_docs_per_s: float


def _require(module: str) -> ModuleType:
    """Import ``module`` or raise PeerUnavailable with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise PeerUnavailable(f"peer needs {module!r}: pip install {_PIP_NAMES[module]}") from err


def _pad(rows: Sequence[Sequence[int]] | np.ndarray, k: int) -> np.ndarray:
    """Stack ragged label lists into (n, k) int64, best first, padded with -1."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        kept = list(row)[:k]
        out[i, : len(kept)] = kept
    return out


@contextlib.contextmanager
def _scratch(workdir: Path | None) -> Iterator[Path]:
    """Yield ``workdir`` (created if needed) or a temporary directory removed afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _native_output_to(path: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` meanwhile: omikuji's Rust logger floods both."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with path.open("ab") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
    finally:
        for fd, copy in enumerate(saved, start=1):
            os.dup2(copy, fd)
            os.close(copy)


def _measure(name: str, fit: Callable[[], Predictor], test: Any, n_test: int, k: int) -> PeerResult:
    """Train via ``fit``, predict top-k for ``test``, and time both."""
    start = time.perf_counter()
    predict = fit()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    topk = predict(test, k)
    predict_seconds = time.perf_counter() - start
    log.info("peer=%s train_s=%.2f predict_s=%.2f", name, train_seconds, predict_seconds)
    return PeerResult(name, topk, train_seconds, n_test / max(predict_seconds, 1e-9))


def _write_xmlrepo(path: Path, x: sp.csr_matrix, y: sp.csr_matrix) -> None:
    """Write the rows that have labels and features as XMLRepository text: omikuji refuses the whole file
    ("Failed to load data") on a row without either, e.g. a GoEmotions comment with no known word."""
    keep = np.flatnonzero((np.diff(y.indptr) > 0) & (np.diff(x.indptr) > 0))
    with path.open("w", encoding="ascii") as f:
        f.write(f"{len(keep)} {x.shape[1]} {y.shape[1]}\n")
        for i in keep:
            labels = ",".join(map(str, y.indices[y.indptr[i] : y.indptr[i + 1]]))
            lo, hi = x.indptr[i], x.indptr[i + 1]
            pairs = " ".join(
                f"{j}:{v:.6g}" for j, v in zip(x.indices[lo:hi], x.data[lo:hi], strict=True)
            )
            f.write(f"{labels} {pairs}\n")


def _fit_omikuji(
    x: sp.csr_matrix, y: sp.csr_matrix, workdir: Path, overrides: dict[str, Any]
) -> Predictor:
    """Train omikuji from a file with its default (Parabel) settings plus ``overrides``."""
    omikuji = _require("omikuji")
    hyper = omikuji.Model.default_hyper_param()
    for key, value in overrides.items():
        setattr(hyper, key, value)
    path = workdir / "omikuji_train.txt"
    _write_xmlrepo(path, x.tocsr(), y.tocsr())
    with _native_output_to(workdir / "omikuji.log"):
        model = omikuji.Model.train_on_data(str(path), hyper, n_threads=N_THREADS)

    def predict(x_test: sp.csr_matrix, k: int) -> np.ndarray:
        x_test = x_test.tocsr()
        rows = []
        for lo, hi in zip(x_test.indptr[:-1], x_test.indptr[1:], strict=True):
            pairs = list(
                zip(x_test.indices[lo:hi].tolist(), x_test.data[lo:hi].tolist(), strict=True)
            )
            rows.append([lab for lab, _ in model.predict(pairs, top_k=k)])
        return _pad(rows, k)

    return predict


def _fit_parabel(x: sp.csr_matrix, y: sp.csr_matrix, seed: int, workdir: Path) -> Predictor:
    """omikuji as Parabel: 3 trees, balanced 2-means; the library exposes no seed."""
    return _fit_omikuji(x, y, workdir, {"n_trees": 3, "cluster_k": 2, "cluster_balanced": True})


def _fit_bonsai(x: sp.csr_matrix, y: sp.csr_matrix, seed: int, workdir: Path) -> Predictor:
    """omikuji as Bonsai: wide shallow trees, unbalanced 100-means, depth 3; no seed exposed."""
    overrides = {"cluster_k": 100, "cluster_balanced": False, "max_depth": 3}
    return _fit_omikuji(x, y, workdir, overrides)


def _fit_plt(x: sp.csr_matrix, y: sp.csr_matrix, seed: int, workdir: Path) -> Predictor:
    """napkinXC probabilistic label tree with its default (hierarchical k-means) tree."""
    models = _require("napkinxc.models")
    # its liblinear draws from libc rand(), which `seed` does not reach and threads race on:
    # reseeding it and training on one thread is what makes a seed reproduce a model
    ctypes.CDLL(None).srand(seed)
    model = models.PLT(str(workdir / "napkinxc_plt"), seed=seed, threads=1)
    model.fit(x, y)
    return lambda x_test, k: _pad(model.predict(x_test, top_k=k), k)


def _fit_ovr(x: sp.csr_matrix, y: sp.csr_matrix, seed: int, workdir: Path) -> Predictor:
    """One-vs-rest liblinear logistic regression, one binary model per label seen in training."""
    _require("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    seen = np.flatnonzero(y.getnnz(axis=0) > 0)  # a label never seen is ranked last
    # C=10 as in napkinXC's nodes; sklearn's C=1 underfits tf-idf (bibtex P@1 60.5 vs 64.1)
    base = LogisticRegression(solver="liblinear", C=10.0, random_state=seed)
    model = OneVsRestClassifier(base, n_jobs=N_THREADS).fit(x, y[:, seen])

    def predict(x_test: sp.csr_matrix, k: int) -> np.ndarray:
        scores = np.full((x_test.shape[0], y.shape[1]), -np.inf)  # (n_test, n_labels)
        scores[:, seen] = model.decision_function(x_test).reshape(x_test.shape[0], -1)
        return _pad(np.argsort(-scores, axis=1, kind="stable")[:, :k], k)

    return predict


_FEATURE_FITS: dict[str, Callable[[sp.csr_matrix, sp.csr_matrix, int, Path], Predictor]] = {
    "omikuji-parabel": _fit_parabel,
    "omikuji-bonsai": _fit_bonsai,
    "napkinxc-plt": _fit_plt,
    "ovr-logistic": _fit_ovr,
}
FEATURE_PEERS: tuple[str, ...] = tuple(_FEATURE_FITS)
_PEER_MODULES = {  # peer name -> the module it needs
    "omikuji-parabel": "omikuji",
    "omikuji-bonsai": "omikuji",
    "napkinxc-plt": "napkinxc.models",
    "ovr-logistic": "sklearn",
    FASTTEXT: "fasttext",
}


def run_feature_peer(
    name: str,
    x_train: sp.csr_matrix,
    y_train: sp.csr_matrix,
    x_test: sp.csr_matrix,
    k: int = 5,
    seed: int = 0,
    workdir: Path | None = None,
) -> PeerResult:
    """Train feature peer ``name`` on (x_train, y_train) and predict top-k for x_test."""
    if name not in _FEATURE_FITS:
        choices = ", ".join(FEATURE_PEERS)
        raise ValueError(f"unknown feature peer {name!r}; choose one of {choices}")
    if x_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"x_train has {x_train.shape[0]} rows but y_train has {y_train.shape[0]}")
    with _scratch(workdir) as wd:
        fit = functools.partial(_FEATURE_FITS[name], x_train, y_train, seed, wd)
        return _measure(name, fit, x_test, x_test.shape[0], k)


# unigrams: on reuters they beat wordNgrams=2 (P@1 91.4 vs 89.6) in half the time and memory
_FASTTEXT_ARGS = {"loss": "ova", "lr": 0.5, "epoch": 25, "dim": 100, "wordNgrams": 1, "minCount": 1}


def _fasttext_line(text: str) -> str:
    """Lower-case word tokens joined by single spaces (fastText reads one line per document)."""
    return " ".join(re.findall(r"\w+", text.lower()))


def _fit_fasttext(texts: list[str], labels: list[list[int]], seed: int, workdir: Path) -> Predictor:
    """fastText with one-vs-all loss; one thread, so the seed makes it deterministic."""
    fasttext = _require("fasttext")
    path = workdir / "fasttext_train.txt"
    with path.open("w", encoding="utf-8") as f:
        for text, labs in zip(texts, labels, strict=True):
            if labs:  # fastText skips label-less lines anyway
                tags = " ".join(f"__label__{lab}" for lab in labs)
                f.write(f"{tags} {_fasttext_line(text)}\n")
    model = fasttext.train_supervised(str(path), thread=1, seed=seed, verbose=0, **_FASTTEXT_ARGS)

    def predict(test: list[str], k: int) -> np.ndarray:
        # the batch form: fastText's single-text predict breaks on numpy 2
        predicted, _ = model.predict([_fasttext_line(t) for t in test], k=k)
        return _pad([[int(lab.removeprefix("__label__")) for lab in row] for row in predicted], k)

    return predict


def run_fasttext(
    train_texts: list[str],
    train_labels: list[list[int]],
    test_texts: list[str],
    n_labels: int,
    k: int = 5,
    seed: int = 0,
    workdir: Path | None = None,
) -> PeerResult:
    """Train fastText (loss='ova') on raw texts and predict top-k label ids for test_texts."""
    if len(train_texts) != len(train_labels):
        raise ValueError(f"{len(train_texts)} train texts but {len(train_labels)} label lists")
    if any(lab < 0 or lab >= n_labels for labs in train_labels for lab in labs):
        raise ValueError(f"train_labels must be ids in [0, {n_labels})")
    with _scratch(workdir) as wd:
        fit = functools.partial(_fit_fasttext, train_texts, train_labels, seed, wd)
        return _measure(FASTTEXT, fit, test_texts, len(test_texts), k)


def available_peers() -> dict[str, str | None]:
    """Map every peer name to None if its package imports, else the reason with the pip command."""
    status: dict[str, str | None] = {}
    for name, module in _PEER_MODULES.items():
        try:
            _require(module)
            status[name] = None
        except PeerUnavailable as err:
            status[name] = str(err)
    return status
