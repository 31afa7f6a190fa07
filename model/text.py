"""Documents → sparse (feature id, weight) rows: the paper's spatial-attention input.

Raw text is tokenised (words; character pairs in scripts written without spaces), mapped through a
vocabulary fitted on the training documents (minimum document frequency, size cap) and weighted by
sublinear tf × idf; feature-matrix data keeps its feature ids and gets the same tf-idf weighting
(count-like features), z-scores per column from the training rows (dense real values), or keeps its values
(sparse real values). Every row is then L2-normalised. The result is a float32 CSR matrix (n_docs,
n_features); a dense array of that shape is built only for standardised features, whose rows are dense
already.

A text featurizer may also name a pretrained sentence encoder (``model.encoder``): its L2-normalised
vector (``dim`` values) is appended to each row as ``dim`` extra columns after the vocabulary's, which
Rank-AE projects with a dense layer (``ModelConfig.dense_features``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from model.encoder import TUNED_FILE, Tuned, load_encoder, require_encoder
from model.errors import CheckpointError, ConfigError, DataError, TaggerError

__all__ = ["TOKENIZER", "TOKENIZERS", "Featurizer", "l2_normalise", "paired_characters", "tokenize", "tokenize_v1"]

_TOKEN_V1 = re.compile(r"[^\W_]{2,}|\d")


def _mark_ranges() -> str:
    """The combining marks of the Basic Multilingual Plane (Unicode categories Mn, Mc, Me) as a character class
    body: vowel signs and viramas of Indic scripts, Arabic and Hebrew points, decomposed accents."""
    marks = [c for c in range(0x10000) if unicodedata.category(chr(c)).startswith("M")]
    starts = [c for i, c in enumerate(marks) if i == 0 or marks[i - 1] != c - 1]
    ends = [c for i, c in enumerate(marks) if i == len(marks) - 1 or marks[i + 1] != c + 1]
    return "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in zip(starts, ends, strict=True))


# Scripts tokenised as overlapping character pairs. Written without spaces between words: Thai and Lao,
# Myanmar, Khmer, Hiragana and Katakana, Han (extension A, unified, compatibility; extensions B-F and the
# compatibility supplement); a word tokenizer makes each of their sentences one token, seen once. And Hangul
# (syllables, jamo), whose spaced words carry their particles (학교에서, "at school"). Character pairs are the
# standard stand-in for a dictionary segmenter (Lucene's CJKBigramFilter, which pairs the same scripts).
_PAIRED = ("\\u0e00-\\u0eff\\u1000-\\u109f\\u1100-\\u11ff\\u1780-\\u17ff\\u3040-\\u30ff\\u3130-\\u318f"
           "\\u3400-\\u4dbf\\u4e00-\\u9fff\\uac00-\\ud7af\\uf900-\\ufaff\\U00020000-\\U0002fa1f")
_MARKS = _mark_ranges()
# Text with neither marks nor paired scripts (after NFKC: accents composed) tokenises as the first tokenizer
# did, which is 1.6 times faster than the rule below (cooking's long non-ASCII questions: 47 against 74 µs).
_SPECIAL = re.compile(f"[{_PAIRED}{_MARKS}]")
_PAIRED_CHAR = re.compile(f"[{_PAIRED}]")
# (a paired run) or (a word: a letter or digit, then letters, digits or marks; or one digit)
_RUNS_AND_WORDS = re.compile(f"([{_PAIRED}]+)|([^\\W_{_PAIRED}](?:[^\\W_{_PAIRED}]|[{_MARKS}])+|\\d)")

Kind = Literal["text", "features"]
Weighting = Literal["tfidf", "raw", "standard"]
# Real-valued feature matrices at least this share non-zero are standardised per column. Their columns share
# a large positive offset that unit-length rows keep: Mediamill's 120 video features all lie in (0, 0.78) with
# column means 0.2-0.46 and spreads near 0.07, so every pair of its documents had a cosine near 1. Centred
# and scaled columns: validation P@1 78.9 -> 83.9 and 81.4 -> 85.4 (seeds 0 and 1, docs/results.md,
# "Dense features get z-scores"). Centring makes every entry non-zero, so a sparse matrix (rcv1v2's given
# tf-idf values, 0.2% non-zero) keeps its values, as scikit-learn's StandardScaler refuses to centre one.
_DENSE_SHARE = 0.25
_CONSTANT = 1e-6  # a column whose spread is at most this share of its mean is constant (float32 keeps ~7 digits)


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens: runs of two or more letters/digits (combining marks kept in their word), or a single
    digit; scripts written without spaces (Chinese, Japanese kana, Thai, Lao, Khmer, Myanmar) and Korean as
    overlapping character pairs, as Lucene's CJK analyzer does. Non-ASCII text is NFKC-normalised first (full-width
    letters and digits, ligatures, half-width kana become their plain forms).

    >>> tokenize("Chewy cookies: 2 cups of sugar_free, Starbucks-style!")
    ['chewy', 'cookies', '2', 'cups', 'of', 'sugar', 'free', 'starbucks', 'style']
    >>> tokenize("机器学习很流行。Ｐｙｔｈｏｎ 3 と 東京")
    ['机器', '器学', '学习', '习很', '很流', '流行', 'python', '3', 'と', '東京']
    >>> tokenize("नमस्ते दुनिया")  # Devanagari vowel signs are combining marks: each word stays whole
    ['नमस्ते', 'दुनिया']
    """
    if text.isascii():  # what nearly every English document takes: the two rules agree on ASCII
        return _TOKEN_V1.findall(text.lower())
    text = unicodedata.normalize("NFKC", text).lower()  # lower after NFKC: it can make capitals (Ⅸ → IX)
    if not _SPECIAL.search(text):  # composed accents, dashes, emoji
        return _TOKEN_V1.findall(text)
    tokens: list[str] = []
    for paired, word in _RUNS_AND_WORDS.findall(text):
        if not paired:
            tokens.append(word)
        elif len(paired) == 1:
            tokens.append(paired)
        else:
            tokens.extend(paired[i:i + 2] for i in range(len(paired) - 1))
    return tokens


def paired_characters(text: str) -> int:
    """How many characters of ``text`` belong to the scripts tokenised as character pairs (about one token each)."""
    return 0 if text.isascii() else len(_PAIRED_CHAR.findall(text))


def tokenize_v1(text: str) -> list[str]:
    """The first tokenizer, which models saved before ``words-v2`` were trained with: runs of two or more
    letters/digits, or a single digit, split at combining marks; Chinese or Thai sentences stay whole runs.

    >>> tokenize_v1("机器学习很流行。नमस्ते")  # one token for the sentence; the Hindi word cut at its virama
    ['机器学习很流行', 'नमस']
    """
    return _TOKEN_V1.findall(text.lower())


# Tokenizers by the name a saved vocabulary records; a vocabulary saved without one is "words-v1".
TOKENIZERS = {"words-v1": tokenize_v1, "words-v2": tokenize}
TOKENIZER = "words-v2"  # what new text models are fitted with


def _idf(doc_freq: np.ndarray, n_docs: int) -> np.ndarray:
    """Smoothed idf, ln((1 + n) / (1 + df)) + 1, as in scikit-learn."""
    return (np.log((1.0 + n_docs) / (1.0 + doc_freq)) + 1.0).astype(np.float32)


def _floats(values: np.ndarray | None) -> list[float] | None:
    """A saved array as a JSON list (None stays None)."""
    return None if values is None else [float(v) for v in values]


def _array(values: list[float] | None) -> np.ndarray | None:
    """A saved JSON list as a float32 array (None stays None)."""
    return None if values is None else np.asarray(values, dtype=np.float32)


def l2_normalise(x: sp.csr_matrix) -> sp.csr_matrix:
    """x (n, F) with each row scaled to unit L2 norm (rows of zeros stay zero), float32 CSR, indices sorted."""
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    rows = sp.csr_matrix(sp.diags(1.0 / norms) @ x, dtype=np.float32)
    rows.sort_indices()  # canonical form: consumers such as liblinear sort in place otherwise
    return rows


@dataclass(frozen=True)
class Featurizer:
    """A fitted, deterministic document → (feature ids, weights) transform, saved with the model."""

    kind: Kind
    n_features: int  # vocabulary size (text) or feature count: the sparse columns
    weighting: Weighting = "tfidf"
    tokens: tuple[str, ...] = ()  # text only: feature id → token
    idf: np.ndarray | None = None  # (n_features,) float32 when weighting == "tfidf"
    encoder: str = ""  # text only: a pretrained sentence encoder whose vector follows the sparse columns
    tuned: Tuned | None = None  # that encoder's fine-tuned weights, when it was tuned (saved as their digest)
    mean: np.ndarray | None = None  # (n_features,) float32 training column means when weighting == "standard"
    scale: np.ndarray | None = None  # (n_features,) float32 their standard deviations (1 where constant)
    device: str = field(default="", compare=False)  # where the encoder runs ("": CUDA when present); not saved
    tokenizer: str = TOKENIZER  # text only: the name in TOKENIZERS its vocabulary was fitted with
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _tokenize: Callable[[str], list[str]] = field(init=False, repr=False, compare=False)  # TOKENIZERS[tokenizer]

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise DataError(f"unknown tokenizer {self.tokenizer!r} (this version has {', '.join(TOKENIZERS)}): "
                            "the model was saved by a newer rankae-tagger; upgrade to read it")
        object.__setattr__(self, "_tokenize", TOKENIZERS[self.tokenizer])  # looked up once, not per document
        if self.kind == "text" and not self._index:
            object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})
        if self.encoder and self.kind != "text":
            raise DataError(f"a text encoder ({self.encoder}) needs raw-text documents, not a feature matrix")
        if self.tuned and not self.encoder:
            raise ConfigError("fine-tuned encoder weights were given without the encoder they tune")

    @property
    def dense_features(self) -> int:
        """Columns the encoder's vector takes after the sparse ones (0 without an encoder)."""
        return require_encoder(self.encoder).dim if self.encoder else 0

    @classmethod
    def fit_text(cls, texts: Sequence[str], min_df: int = 2, max_size: int = 50_000, encoder: str = "",
                 tuned: Tuned | None = None) -> Featurizer:
        """Fit a vocabulary (tokens with document frequency ≥ min_df, the max_size most frequent) and idf;
        ``encoder`` names a pretrained sentence encoder whose vector each row also gets (with ``tuned``'s
        fine-tuned weights, when given)."""
        if encoder:
            require_encoder(encoder)
        doc_freq: dict[str, int] = {}
        for text in texts:
            for token in set(TOKENIZERS[TOKENIZER](text)):
                doc_freq[token] = doc_freq.get(token, 0) + 1
        kept = [t for t, df in doc_freq.items() if df >= min_df]
        # Most frequent first, ties broken by the token itself: the same corpus gives the same ids.
        kept.sort(key=lambda t: (-doc_freq[t], t))
        tokens = tuple(kept[:max_size])
        if not tokens:
            raise DataError(f"no token occurs in at least {min_df} training documents; lower min_df")
        df = np.array([doc_freq[t] for t in tokens], dtype=np.float64)
        return cls("text", len(tokens), "tfidf", tokens, _idf(df, len(texts)), encoder, tuned)

    @classmethod
    def fit_matrix(cls, x: sp.csr_matrix, weighting: Weighting | None = None) -> Featurizer:
        """Fit on a feature matrix (n, F): tf-idf when values are counts (non-negative integers), z-scores
        per column when they are real and dense (at least ``_DENSE_SHARE`` non-zero), else raw values."""
        if weighting is None:
            is_counts = x.nnz > 0 and bool(np.all(x.data >= 0) and np.all(x.data == np.round(x.data)))
            dense = x.nnz >= _DENSE_SHARE * x.shape[0] * x.shape[1]
            weighting = "tfidf" if is_counts else "standard" if dense else "raw"
        if weighting == "tfidf":
            idf = _idf(np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64), x.shape[0])
            return cls("features", x.shape[1], weighting, idf=idf)
        if weighting == "standard":
            values = x.toarray().astype(np.float64)
            mean, scale = values.mean(axis=0), values.std(axis=0)
            # A constant column becomes 0 rather than a division by (nearly) zero: summing a column of 1,000
            # copies of 0.1 leaves a spread of 1.4e-17, which would blow a new value of 0.2 up to 7e15.
            scale[scale <= _CONSTANT * np.abs(mean)] = 1.0
            return cls("features", x.shape[1], weighting, mean=mean.astype(np.float32), scale=scale.astype(np.float32))
        return cls("features", x.shape[1], weighting)

    def transform(self, docs: Sequence[str] | sp.csr_matrix) -> sp.csr_matrix:
        """Weighted, L2-normalised rows, then the encoder's unit vector when there is one:
        (n_docs, n_features + dense_features) float32 CSR."""
        counts = self._count_tokens(docs) if self.kind == "text" else self._check_matrix(docs)
        if self.idf is not None:  # weighting == "tfidf"
            counts = counts.copy()
            counts.data = (1.0 + np.log(np.maximum(counts.data, 1e-12))) * self.idf[counts.indices]
        if self.mean is not None and self.scale is not None:  # weighting == "standard"
            counts = sp.csr_matrix((counts.toarray() - self.mean) / self.scale, dtype=np.float32)
        rows = l2_normalise(counts)
        if not self.encoder:
            return rows
        vectors = load_encoder(self.encoder, self.device or None, tuned=self.tuned).encode(list(docs))  # texts
        return sp.hstack([rows, sp.csr_matrix(vectors)], format="csr", dtype=np.float32)

    def prepare(self) -> None:
        """Load the encoder now (exporting its CPU runtime on first use), so the first transform does not
        pay for it; nothing to do without an encoder."""
        if self.encoder:
            load_encoder(self.encoder, self.device or None, tuned=self.tuned)

    def on(self, device: object) -> Featurizer:
        """The same featurizer, running its encoder (if any) on ``device`` (a torch device or its name)."""
        return dataclasses.replace(self, device=str(device))

    def without_encoder(self) -> Featurizer:
        """The same vocabulary and weighting with no encoder columns (what sparse-only models read)."""
        return dataclasses.replace(self, encoder="", tuned=None, device="")

    def token_ids(self, text: str) -> list[int]:
        """Feature ids of a text's known tokens, in order (for explanations, and per document when counting)."""
        # One dict.get per token through map (the worker runs this for every document it tags).
        return [i for i in map(self._index.get, self._tokenize(text)) if i is not None]

    def _count_tokens(self, texts: Sequence[str] | sp.csr_matrix) -> sp.csr_matrix:
        if isinstance(texts, sp.spmatrix | str):
            raise DataError("a text model needs a list of texts, not a feature matrix or one string")
        cols: list[int] = []
        lengths: list[int] = []
        for text in texts:
            ids = self.token_ids(text)
            cols.extend(ids)
            lengths.append(len(ids))
        rows = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
        ones = np.ones(len(cols), dtype=np.float32)
        # COO → CSR sums duplicate (row, col) pairs: the term frequencies.
        return sp.csr_matrix((ones, (rows, np.asarray(cols, dtype=np.int32))), shape=(len(texts), self.n_features))

    def _check_matrix(self, x: Sequence[str] | sp.csr_matrix) -> sp.csr_matrix:
        if not isinstance(x, sp.spmatrix):
            raise DataError("a feature-matrix model needs a sparse feature matrix, not texts")
        if x.shape[1] != self.n_features:
            raise DataError(f"feature matrix has {x.shape[1]} columns; the model expects {self.n_features}")
        return sp.csr_matrix(x, dtype=np.float32)

    def save(self, path: Path) -> None:
        """Write as JSON (tokens, idf, column means and scales), readable without running any code."""
        body = {"kind": self.kind, "n_features": self.n_features, "weighting": self.weighting,
                "tokens": list(self.tokens), "idf": _floats(self.idf), "encoder": self.encoder,
                "encoder_tuned": self.tuned.digest if self.tuned else "",
                "mean": _floats(self.mean), "scale": _floats(self.scale), "tokenizer": self.tokenizer}
        path.write_text(json.dumps(body), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Featurizer:
        """Read what :meth:`save` wrote (fine-tuned encoder weights from the same directory); a damaged file
        raises CheckpointError."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            idf, mean, scale = (_array(body.get(key)) for key in ("idf", "mean", "scale"))
            digest = str(body.get("encoder_tuned", ""))
            tuned = Tuned(path.parent / TUNED_FILE, digest) if digest else None
            featurizer = cls(body["kind"], int(body["n_features"]), body["weighting"],
                             tuple(body["tokens"]), idf, str(body.get("encoder", "")), tuned, mean=mean, scale=scale,
                             tokenizer=str(body.get("tokenizer", "words-v1")))  # saved before v2: v1
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable vocabulary file ({err})") from err
        except TaggerError as err:
            raise CheckpointError(f"{path}: {err}") from err
        if featurizer.encoder:  # refuse a model whose encoder is not installed, saying what to install
            try:
                require_encoder(featurizer.encoder)
            except ConfigError as err:
                raise CheckpointError(f"{path}: {err}") from err
        if featurizer.tuned:
            featurizer.tuned.check()
        if featurizer.kind == "text" and len(featurizer.tokens) != featurizer.n_features:
            raise CheckpointError(f"{path}: {len(featurizer.tokens)} tokens but n_features={featurizer.n_features}")
        for name, values in (("idf", idf), ("mean", mean), ("scale", scale)):
            if values is not None and values.shape != (featurizer.n_features,):
                raise CheckpointError(f"{path}: {name} has {values.shape[0]} entries, expected {featurizer.n_features}")
        if featurizer.weighting == "standard" and (mean is None or scale is None):
            raise CheckpointError(f"{path}: standardised features need their column mean and scale")
        return featurizer

