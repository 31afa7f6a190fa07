"""A seeded generator of small multi-label text corpora, for tests, the demo and smoke runs.

Each label owns a handful of topic words; a document draws 1-3 labels (the second often from a
related label, so labels co-occur like real tags), then mixes its labels' topic words with common
background words. A model that learns anything ranks the true labels high; one that learns nothing
scores about 1/L.
"""

from __future__ import annotations

import numpy as np

from model.data import Corpus

__all__ = ["generate_corpus"]

_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"


def _words(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct pronounceable pseudo-words of 2-4 syllables."""
    words: set[str] = set()
    while len(words) < count:
        syllables = rng.integers(2, 5)
        words.add("".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(syllables)))
    return sorted(words)


def generate_corpus(n_docs: int = 2000, n_labels: int = 20, seed: int = 0, words_per_label: int = 12,
                    doc_length: tuple[int, int] = (20, 60), topic_share: float = 0.5,
                    labels_per_doc: int | None = None) -> Corpus:
    """A corpus of ``n_docs`` JSONL-style documents with ids ``doc-0000``... and labels ``topic-00``...

    Documents draw 1-3 labels, or exactly ``labels_per_doc`` (a dense label set, like Delicious's 19).
    """
    if labels_per_doc is not None and not 1 <= labels_per_doc <= n_labels:
        raise ValueError(f"labels_per_doc must be in [1, {n_labels}], got {labels_per_doc}")
    rng = np.random.default_rng(seed)
    vocab = _words(rng, n_labels * words_per_label + 300)
    topic_words = [vocab[i * words_per_label:(i + 1) * words_per_label] for i in range(n_labels)]
    background = vocab[n_labels * words_per_label:]
    related = rng.permutation(n_labels)  # label l's usual companion
    popularity = 1.0 / np.arange(1, n_labels + 1) ** 0.7  # a skewed, tag-like label distribution
    popularity /= popularity.sum()
    texts, labels = [], []
    for _ in range(n_docs):
        doc_labels = _draw_labels(rng, popularity, related, labels_per_doc)
        texts.append(_draw_text(rng, doc_labels, topic_words, background, doc_length, topic_share))
        labels.append([f"topic-{label:02d}" for label in doc_labels])
    ids = [f"doc-{i:05d}" for i in range(n_docs)]
    return Corpus(ids, labels, texts=texts)


def _draw_labels(rng: np.random.Generator, popularity: np.ndarray, related: np.ndarray,
                 count: int | None) -> list[int]:
    chosen = [int(rng.choice(len(popularity), p=popularity))]
    if count is None:
        for _ in range(int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))):
            companion = _companion(rng, popularity, related, chosen[-1])
            if companion not in chosen:
                chosen.append(companion)
        return chosen
    while len(chosen) < count:
        companion = _companion(rng, popularity, related, chosen[-1])
        if companion in chosen:  # a repeat: take a fresh label, so a dense set always completes
            companion = int(rng.choice(np.setdiff1d(np.arange(len(popularity)), chosen)))
        chosen.append(companion)
    return chosen


def _companion(rng: np.random.Generator, popularity: np.ndarray, related: np.ndarray, last: int) -> int:
    """Usually the last label's related label, otherwise one drawn by popularity."""
    return int(related[last]) if rng.random() < 0.6 else int(rng.choice(len(popularity), p=popularity))


def _draw_text(rng: np.random.Generator, doc_labels: list[int], topic_words: list[list[str]],
               background: list[str], doc_length: tuple[int, int], topic_share: float) -> str:
    length = int(rng.integers(doc_length[0], doc_length[1] + 1))
    words = []
    for _ in range(length):
        on_topic = rng.random() < topic_share
        pool = topic_words[doc_labels[int(rng.integers(len(doc_labels)))]] if on_topic else background
        words.append(pool[int(rng.integers(len(pool)))])
    return " ".join(words)

