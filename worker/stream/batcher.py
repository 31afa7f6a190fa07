"""Deadline micro-batching: a batch closes at max documents, max tokens, or max wait since its first record.

The batcher is pure bookkeeping with an injectable clock, so its rules are tested without sleeping.
Records that failed to decode ride along (they count toward neither limit) so that a batch's offsets
stay contiguous per partition and are committed together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from model.text import paired_characters
from worker.stream.messages import Document

__all__ = ["Batch", "Batcher", "Item", "approx_tokens"]


def approx_tokens(text: str) -> int:
    """The batch's token measure: whitespace-separated words, close to ``model.text.tokenize``'s count, plus
    the characters of the scripts the tokenizer turns into character pairs (Chinese, Japanese, Thai, Korean...),
    about one token each where ``split()`` sees one word per sentence or phrase.

    The token limit (``TAGGER_MAX_BATCH_TOKENS``, "whitespace-separated tokens") only bounds how much
    featurizing one batch costs. The exact count would cost as much as the featurizer's own tokenizing,
    about 5x a ``split()`` (65 vs 12 µs on a 2 kB document, against ~140 µs per document for the whole
    worker at its measured ~7,000 docs/s), so this cheap count stands in for it; ASCII text skips the
    character count.

    >>> from model.text import tokenize
    >>> text = "Chewy cookies: 2 cups of sugar_free, Starbucks-style!"
    >>> approx_tokens(text), len(tokenize(text))
    (7, 9)
    >>> approx_tokens("今天天气很好，明天下雨"), len(tokenize("今天天气很好，明天下雨"))
    (11, 8)
    """
    return len(text.split()) + paired_characters(text)


@dataclass(frozen=True)
class Item:
    """One consumed record: where it came from, and its document or the reason it is bad."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    document: Document | None  # None for a bad message
    reason: str = ""  # BadMessage reason code when document is None


@dataclass
class Batch:
    """Items collected since the batch opened."""

    opened_at: float
    items: list[Item] = field(default_factory=list)
    docs: int = 0
    tokens: int = 0
    idle: bool = False  # a poll while it was open waited idle_wait_s and brought nothing

    def good(self) -> list[Item]:
        """Items that carry a document."""
        return [item for item in self.items if item.document is not None]

    def last_offsets(self) -> dict[tuple[str, int], int]:
        """Highest offset per (topic, partition) in the batch."""
        last: dict[tuple[str, int], int] = {}
        for item in self.items:
            key = (item.topic, item.partition)
            last[key] = max(last.get(key, -1), item.offset)
        return last


class Batcher:
    """Accumulates items; ``due()`` says when the open batch must be flushed."""

    def __init__(self, max_docs: int, max_tokens: int, max_wait_s: float, idle_wait_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_docs, self.max_tokens, self.max_wait_s = max_docs, max_tokens, max_wait_s
        self.idle_wait_s = max_wait_s if idle_wait_s is None else min(idle_wait_s, max_wait_s)
        self.clock = clock
        self.batch: Batch | None = None

    def add(self, item: Item) -> None:
        """Put an item into the open batch (opening one if needed)."""
        if self.batch is None:
            self.batch = Batch(opened_at=self.clock())
        self.batch.items.append(item)
        if item.document is not None:
            self.batch.docs += 1
            self.batch.tokens += approx_tokens(item.document.text)

    def full(self) -> bool:
        """The open batch reached its document or token limit."""
        return self.batch is not None and (self.batch.docs >= self.max_docs or self.batch.tokens >= self.max_tokens)

    def time_left(self) -> float | None:
        """Seconds until the open batch's deadline (≤ 0 when passed); None when no batch is open."""
        if self.batch is None:
            return None
        return self.batch.opened_at + self.max_wait_s - self.clock()

    def poll_wait(self) -> float:
        """How long the next poll may wait, in seconds: 0.1 with no batch open; with one, ``idle_wait_s``
        at most (and never past the deadline), so that an idle stream is noticed quickly."""
        left = self.time_left()
        return 0.1 if left is None else max(0.0, min(left, self.idle_wait_s, 0.1))

    def idle(self) -> None:
        """A poll of ``poll_wait()`` brought nothing: close the open batch without waiting for its deadline.

        Dynamic batching, as Triton's dynamic batcher does with a short queue delay: an idle stream's
        documents go out after ``idle_wait_s`` instead of the whole ``max_wait_s``. Under load every poll
        brings records, so batches still fill to their limits where throughput needs them. (Closing when a
        poll brought fewer records than its maximum was tried first: kafka-python hands out one partition's
        fetched records at a time, so that closed batches early under a backlog and cut the drain rate.)"""
        if self.batch is not None:
            self.batch.idle = True

    def due(self) -> bool:
        """The open batch must be flushed now: full, idle, or past its deadline."""
        left = self.time_left()
        return left is not None and (left <= 0 or self.full() or (self.batch is not None and self.batch.idle))

    def take(self) -> Batch | None:
        """Close and return the open batch (None when there is none)."""
        batch, self.batch = self.batch, None
        return batch
