"""Every Redis key rankae-tagger reads or writes: the schema, in one place.

::

    tagger:tags:{id}        hash    tags   JSON [[label, score], ...], best first
                                    model  version of the model that tagged it
                                    src    "topic/partition/offset" of the message it came from
                                    ts     the message's Kafka timestamp, ms since the epoch
                            expiry  TAGGER_TAGS_TTL_S (0 = none)
    tagger:doc:{id}         string  JSON {"text": ...}, what the learner retrains on; expiry TAGGER_DOC_TTL_S
    tagger:corrections      stream  submitted corrections (fields: id, add, remove, user, ts)
    tagger:corrections:rejected  hash  reason -> count of corrections the learner refused
    tagger:ratelimit:{user}:{minute}  string  corrections a user submitted in that minute (expires)
    tagger:examples         hash    id -> JSON {"text", "labels", "user", "ts"}: the learner's examples
    tagger:labels:proposed  zset    new label -> when a correction last added it (ms since the epoch)
    tagger:label:{name}:users  set  distinct users who added that new label; expires TAGGER_LABEL_TTL_S
                                    after its last use
    tagger:labels:allowed   set     new labels admitted by an operator (``tagger labels add``)

The corrections stream is read by the consumer group ``LEARNERS``.
"""

from __future__ import annotations

__all__ = ["CORRECTIONS", "EXAMPLES", "LABELS_ALLOWED", "LABELS_PROPOSED", "LEARNERS", "REJECTED", "doc_key",
           "label_users_key", "rate_key", "tags_key"]

CORRECTIONS = "tagger:corrections"
REJECTED = "tagger:corrections:rejected"
EXAMPLES = "tagger:examples"
LEARNERS = "learners"  # the corrections stream's consumer group
LABELS_PROPOSED = "tagger:labels:proposed"
LABELS_ALLOWED = "tagger:labels:allowed"


def tags_key(doc_id: str) -> str:
    """The hash holding a document's tags."""
    return f"tagger:tags:{doc_id}"


def doc_key(doc_id: str) -> str:
    """The string holding a document's text."""
    return f"tagger:doc:{doc_id}"


def rate_key(user: str, minute: int) -> str:
    """A user's correction count in one minute (minutes since the epoch)."""
    return f"tagger:ratelimit:{user}:{minute}"


def label_users_key(name: str) -> str:
    """The set of users who added new label ``name`` in a correction."""
    return f"tagger:label:{name}:users"
