"""User corrections: validated, rate-limited, appended to a Redis Stream for the learner.

Stream ``tagger:corrections``, one entry per correction::

    id      the document id            add     JSON list of labels to add
    user    who corrected it           remove  JSON list of labels to remove
    ts      submission time, ms since the epoch

Rejected submissions are counted by reason in the hash ``tagger:corrections:rejected`` (exported by
the learner as ``tagger_corrections_rejected_total``). Reasons: ``bad_id``, ``bad_user``, ``bad_labels``
(not a list of strings), ``empty``, ``too_many_labels`` (over ``MAX_LABELS``), ``conflict``,
``unknown_label`` (removing a label the model does not know, or adding one while new labels are off),
``bad_new_label`` (a new label's name is not well-formed), ``unknown_document`` (never tagged or expired),
``rate_limited``, and, for a stream entry the learner cannot read, ``malformed``. Adding a label the model
does not know proposes it (see :mod:`worker.learn.labels`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from model.errors import TaggerError
from worker.learn.labels import MAX_LABEL_CHARS, LabelBook, well_formed
from worker.settings import Settings
from worker.store.connection import Client, connect
from worker.store.keys import CORRECTIONS, REJECTED, rate_key, tags_key
from worker.stream.messages import MAX_ID_CHARS, is_text  # the same rules as for input documents

__all__ = ["Correction", "CorrectionClient", "CorrectionRejected", "corrected_labels", "correction_client",
           "entry_fields", "parse_entry", "validate"]

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


def validate(correction: Correction, known_labels: set[str], new_labels: bool = False) -> None:
    """Raise CorrectionRejected unless the correction is well-formed and removes only known labels; it may
    add labels the model does not know only with ``new_labels``, and only well-formed ones.

    Safe on any payload (fields of any type, as decoded from JSON): CorrectionRejected is the only error.
    """
    if not is_text(correction.doc_id, MAX_ID_CHARS):
        raise CorrectionRejected("bad_id", f"a correction needs a document id (a string of 1-{MAX_ID_CHARS} "
                                 "characters)")
    if not is_text(correction.user, MAX_USER_CHARS):
        raise CorrectionRejected("bad_user", f"user must be a string of 1-{MAX_USER_CHARS} characters")
    for name, labels in (("add", correction.add), ("remove", correction.remove)):
        if not isinstance(labels, tuple | list):
            raise CorrectionRejected("bad_labels", f"{name!r} must be a list of label names")
    if not correction.add and not correction.remove:
        raise CorrectionRejected("empty", "nothing to add or remove")
    if len(correction.add) + len(correction.remove) > MAX_LABELS:  # before looking at any label: O(1)
        raise CorrectionRejected("too_many_labels", f"at most {MAX_LABELS} labels per correction, got "
                                 f"{len(correction.add) + len(correction.remove)}")
    if not all(isinstance(label, str) for label in (*correction.add, *correction.remove)):
        raise CorrectionRejected("bad_labels", "labels must be strings")
    both = set(correction.add) & set(correction.remove)
    if both:
        raise CorrectionRejected("conflict", f"labels both added and removed: {_show(both)}")
    _check_unknown(set(correction.remove) - known_labels, set(correction.add) - known_labels, len(known_labels),
                   new_labels)


def _check_unknown(removed: set[str], added: set[str], known: int, new_labels: bool) -> None:
    if removed:
        raise CorrectionRejected("unknown_label", f"cannot remove unknown label(s) {_show(removed)}; the model "
                                 f"knows {known}")
    if added and not new_labels:
        raise CorrectionRejected("unknown_label", f"unknown label(s) {_show(added)}; the model knows {known} "
                                 "and new labels are off (TAGGER_LABEL_MIN_USERS=0)")
    malformed = {name for name in added if not well_formed(name)}
    if malformed:
        raise CorrectionRejected("bad_new_label", f"new label(s) {_show(malformed)} are not well-formed: "
                                 f"1-{MAX_LABEL_CHARS} printable characters without surrounding spaces")


def _show(labels: set[str], most: int = 5, chars: int = 40) -> str:
    """A few labels, each cut short, so a hostile correction cannot make a megabyte error message."""
    shown = [repr(label[:chars] + ("..." if len(label) > chars else "")) for label in sorted(labels)[:most]]
    return ", ".join(shown) + (f" and {len(labels) - most} more" if len(labels) > most else "")


def entry_fields(correction: Correction) -> dict[str, str]:
    """The stream entry of a correction (what ``parse_entry`` reads back)."""
    return {"id": correction.doc_id, "add": json.dumps(list(correction.add)),
            "remove": json.dumps(list(correction.remove)), "user": correction.user, "ts": str(correction.ts)}


class CorrectionClient:
    """Submits corrections: validation, unknown-document check, per-user rate limit, XADD."""

    def __init__(self, client: Client, label_names: Iterable[str], per_user_per_minute: int = 30,
                 new_labels: LabelBook | None = None) -> None:
        self.client = client
        self.labels = set(label_names)
        self.per_user_per_minute = per_user_per_minute
        self.new_labels = new_labels  # None: only labels the model knows

    def submit(self, doc_id: str, add: Sequence[str], remove: Sequence[str], user: str) -> str:
        """Append a correction to the stream; returns its entry id, or raises CorrectionRejected."""
        correction = Correction(doc_id, tuple(add), tuple(remove), user, int(time.time() * 1000))
        try:
            validate(correction, self.labels, self.new_labels is not None and self.new_labels.open)
            if not self.client.exists(tags_key(doc_id)):
                raise CorrectionRejected("unknown_document", f"no tagged document with id {doc_id!r}")
            self._rate_limit(user)
        except CorrectionRejected as rejected:
            self.client.hincrby(REJECTED, rejected.reason, 1)
            raise
        fields: dict[Any, Any] = entry_fields(correction)
        entry = self.client.xadd(CORRECTIONS, fields, maxlen=1_000_000, approximate=True)
        unknown = set(correction.add) - self.labels
        if unknown and self.new_labels is not None:
            self.new_labels.propose(sorted(unknown), user)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def _rate_limit(self, user: str) -> None:
        """A fixed one-minute window per user, counted in Redis so every client shares it."""
        key = rate_key(user, int(time.time() // 60))
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 120)
        count = pipe.execute()[0]
        if count > self.per_user_per_minute:
            raise CorrectionRejected("rate_limited", f"user {user!r} sent more than {self.per_user_per_minute} "
                                     "corrections this minute; try again later")


def correction_client(settings: Settings, client: Client | None = None) -> CorrectionClient:
    """A CorrectionClient as ``tagger correct`` builds it: the live model's labels, the rate limit and the
    new-label policy from the settings (``client``: an existing Redis connection, else one from them)."""
    from model.checkpoint import read_meta  # here: reading a checkpoint is only needed to submit
    from worker.learn.registry import resolve

    client = client or connect(settings.redis, wait=False)
    book = LabelBook.from_settings(client, settings.corrections)
    return CorrectionClient(client, read_meta(resolve(settings.model.model_dir)).labels,
                            settings.corrections.corrections_per_user_per_minute, book)


def parse_entry(fields: dict[bytes, bytes]) -> Correction:
    """A stream entry back into a Correction (raises CorrectionRejected if it is malformed)."""
    try:
        add, remove = json.loads(fields[b"add"]), json.loads(fields[b"remove"])
        if not all(isinstance(labels, list) and all(isinstance(x, str) for x in labels) for labels in (add, remove)):
            raise TypeError("add and remove must be JSON lists of strings")
        return Correction(fields[b"id"].decode(), tuple(add), tuple(remove), fields[b"user"].decode(),
                          int(fields[b"ts"]))
    except (KeyError, ValueError, TypeError, RecursionError) as err:
        raise CorrectionRejected("malformed", f"malformed stream entry ({str(err)[:200]})") from err


def corrected_labels(stored_tags: Sequence[tuple[str, float]], cut: float, add: Iterable[str],
                     remove: Iterable[str]) -> list[str]:
    """The corrected label set: current tags scoring at least ``cut``, minus ``remove``, plus ``add``.

    >>> corrected_labels([("a", 0.9), ("b", 0.6), ("c", 0.2)], 0.5, add=["d"], remove=["b"])
    ['a', 'd']
    """
    removed = set(remove)
    kept = [label for label, score in stored_tags if score >= cut and label not in removed]
    return kept + [label for label in add if label not in kept]
