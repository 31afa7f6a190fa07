"""Labels the model does not know yet: proposed in corrections, admitted by agreement or by an operator.

In a live tagging service the vocabulary grows (new Stack Exchange tags, new subject headings). A
correction may add a label the live model does not know, if its name is well-formed. It is *proposed*:
Redis remembers which distinct users added it (``tagger:label:{name}:users``, expiring
``TAGGER_LABEL_TTL_S`` after its last use). It is *admitted* once ``TAGGER_LABEL_MIN_USERS`` distinct users
added it, or at once when an operator allows it (``tagger labels add NAME``). The learner gives the next
candidate model every admitted label (existing labels keep their ids; new ones are appended) and trains
it on the corrected documents that carry it. A proposal nobody repeats expires and is forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from worker.settings import CorrectionSettings
from worker.store.connection import Client
from worker.store.keys import LABELS_ALLOWED, LABELS_PROPOSED, label_users_key
from worker.stream.messages import is_text

__all__ = ["MAX_LABEL_CHARS", "LabelBook", "Proposal", "well_formed"]

MAX_LABEL_CHARS = 100


def well_formed(name: object) -> bool:
    """A label name a correction may introduce: 1-100 printable characters, no surrounding spaces.

    >>> [well_formed(n) for n in ("baking-soda", " x", "tab\\there", "", 7)]
    [True, False, False, False, False]
    """
    return is_text(name, MAX_LABEL_CHARS) and isinstance(name, str) and name == name.strip() and name.isprintable()


@dataclass(frozen=True)
class Proposal:
    """A new label as the learner sees it: how many distinct users added it, and whether it is admitted."""

    name: str
    users: int
    allowed: bool
    admitted: bool


class LabelBook:
    """Proposals of new labels, the operator's allow-list, and the admission rule, kept in Redis."""

    def __init__(self, client: Client, min_users: int, ttl_s: int) -> None:
        self.client, self.min_users, self.ttl_s = client, min_users, ttl_s

    @classmethod
    def from_settings(cls, client: Client, settings: CorrectionSettings) -> LabelBook:
        """The book with ``TAGGER_LABEL_MIN_USERS`` and ``TAGGER_LABEL_TTL_S``."""
        return cls(client, settings.label_min_users, settings.label_ttl_s)

    @property
    def open(self) -> bool:
        """Whether corrections may introduce new labels at all (``TAGGER_LABEL_MIN_USERS`` > 0)."""
        return self.min_users > 0

    def propose(self, names: Iterable[str], user: str) -> None:
        """Record that ``user`` added each of ``names`` (labels the live model does not know)."""
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.sadd(label_users_key(name), user)
            pipe.expire(label_users_key(name), self.ttl_s)
            pipe.zadd(LABELS_PROPOSED, {name: now_ms})
        pipe.execute()

    def allow(self, names: Sequence[str]) -> None:
        """Admit ``names`` now, whoever proposed them (the operator's allow-list)."""
        if names:
            self.client.sadd(LABELS_ALLOWED, *names)

    def proposals(self, known: set[str]) -> list[Proposal]:
        """Every proposed or allowed label the model does not know, by name, after forgetting expired ones."""
        self.forget_expired()
        allowed = {m.decode() for m in self.client.smembers(LABELS_ALLOWED)}  # type: ignore[union-attr]
        proposed = {m.decode() for m in self.client.zrange(LABELS_PROPOSED, 0, -1)}  # type: ignore[union-attr]
        names = sorted((allowed | proposed) - known)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.scard(label_users_key(name))
        counts = pipe.execute() if names else []
        return [Proposal(name, int(users), name in allowed, name in allowed or 0 < self.min_users <= users)
                for name, users in zip(names, counts, strict=True)]

    def admitted(self, known: set[str]) -> list[str]:
        """New labels (not in ``known``) admitted now, by name."""
        return [p.name for p in self.proposals(known) if p.admitted]

    def forget_expired(self) -> int:
        """Drop proposals last made more than ``ttl_s`` ago (their user sets have expired too)."""
        cutoff_ms = int((time.time() - self.ttl_s) * 1000)
        return int(self.client.zremrangebyscore(LABELS_PROPOSED, "-inf", cutoff_ms))
