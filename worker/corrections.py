"""User corrections: validated, rate-limited, appended to a Redis Stream for the learner.

Stream ``tagger:corrections``, one entry per correction::

    id      the document id            add     JSON list of labels to add
    user    who corrected it           remove  JSON list of labels to remove
    ts      submission time, ms since the epoch

Rejected submissions are counted by reason in the hash ``tagger:corrections:rejected`` (exported by
the learner as ``tagger_corrections_rejected_total``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from model.errors import TaggerError
from worker.store import TAGS_KEY

__all__ = ["STREAM", "Correction", "CorrectionClient", "CorrectionRejected", "corrected_labels", "label_names_of",
           "parse_entry", "validate"]

STREAM = "tagger:corrections"
REJECTED = "tagger:corrections:rejected"
_RATE_KEY = "tagger:ratelimit:{}:{}"
MAX_LABELS = 50  # per correction, add and remove together
MAX_USER_CHARS = 128


class CorrectionRejected(TaggerError):
    """A correction that is not accepted; ``reason`` is a short code for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Correction:
    """One user's correction of one document's tags."""

    doc_id: str
    add: tuple[str, ...]
    remove: tuple[str, ...]
    user: str
    ts: int = 0  # ms since the epoch


def validate(correction: Correction, known_labels: set[str]) -> None:
    """Raise CorrectionRejected unless the correction is well-formed and names only known labels."""
    if not correction.doc_id:
        raise CorrectionRejected("bad_id", "a correction needs a document id")
    if not correction.user or len(correction.user) > MAX_USER_CHARS:
        raise CorrectionRejected("bad_user", f"user must be 1-{MAX_USER_CHARS} characters")
    if not correction.add and not correction.remove:
        raise CorrectionRejected("empty", "nothing to add or remove")
    if len(correction.add) + len(correction.remove) > MAX_LABELS:
        raise CorrectionRejected("too_many_labels", f"at most {MAX_LABELS} labels per correction")
    both = set(correction.add) & set(correction.remove)
    if both:
        raise CorrectionRejected("conflict", f"labels both added and removed: {sorted(both)}")
    unknown = sorted((set(correction.add) | set(correction.remove)) - known_labels)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise CorrectionRejected("unknown_label", f"unknown label(s) {shown}; the model knows {len(known_labels)}")


def label_names_of(checkpoint_dir: Path) -> set[str]:
    """The label set of a checkpoint, read from labels.json without loading the model."""
    return set(json.loads((checkpoint_dir / "labels.json").read_text(encoding="utf-8")))


class CorrectionClient:
    """Submits corrections: validation, unknown-document check, per-user rate limit, XADD."""

    def __init__(self, client: redis.Redis, label_names: Iterable[str], per_user_per_minute: int = 30) -> None:
        self.client = client
        self.labels = set(label_names)
        self.per_user_per_minute = per_user_per_minute

    def submit(self, doc_id: str, add: Sequence[str], remove: Sequence[str], user: str) -> str:
        """Append a correction to the stream; returns its entry id, or raises CorrectionRejected."""
        correction = Correction(doc_id, tuple(add), tuple(remove), user, int(time.time() * 1000))
        try:
            validate(correction, self.labels)
            if not self.client.exists(TAGS_KEY.format(doc_id)):
                raise CorrectionRejected("unknown_document", f"no tagged document with id {doc_id!r}")
            self._rate_limit(user)
        except CorrectionRejected as rejected:
            self.client.hincrby(REJECTED, rejected.reason, 1)
            raise
        fields: dict[Any, Any] = {"id": doc_id, "add": json.dumps(list(add)), "remove": json.dumps(list(remove)),
                                  "user": user, "ts": str(correction.ts)}
        entry = self.client.xadd(STREAM, fields, maxlen=1_000_000, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def _rate_limit(self, user: str) -> None:
        """A fixed one-minute window per user, counted in Redis so every client shares it."""
        key = _RATE_KEY.format(user, int(time.time() // 60))
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 120)
        count = pipe.execute()[0]
        if count > self.per_user_per_minute:
            raise CorrectionRejected("rate_limited", f"user {user!r} sent more than {self.per_user_per_minute} "
                                     "corrections this minute; try again later")


def parse_entry(fields: dict[bytes, bytes]) -> Correction:
    """A stream entry back into a Correction (raises CorrectionRejected if it is malformed)."""
    try:
        return Correction(fields[b"id"].decode(), tuple(json.loads(fields[b"add"])),
                          tuple(json.loads(fields[b"remove"])), fields[b"user"].decode(), int(fields[b"ts"]))
    except (KeyError, ValueError, TypeError) as err:
        raise CorrectionRejected("malformed", f"malformed stream entry ({err})") from err


def corrected_labels(stored_tags: Sequence[tuple[str, float]], cut: float, add: Iterable[str],
                     remove: Iterable[str]) -> list[str]:
    """The corrected label set: current tags scoring at least ``cut``, minus ``remove``, plus ``add``.

    >>> corrected_labels([("a", 0.9), ("b", 0.6), ("c", 0.2)], 0.5, add=["d"], remove=["b"])
    ['a', 'd']
    """
    removed = set(remove)
    kept = [label for label, score in stored_tags if score >= cut and label not in removed]
    return kept + [label for label in add if label not in kept]
