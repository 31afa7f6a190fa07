"""Every Redis key rankae-tagger reads or writes: the schema, in one place.

::

    tagger:{id}:tags        hash    tags   JSON [[label, score], ...], best first
                                    model  version of the model that tagged it
                                    src    "topic/partition/offset" of the message it came from
                                    ts     the message's Kafka timestamp, ms since the epoch
                            expiry  TAGGER_TAGS_TTL_S (0 = none)
    tagger:{id}:doc         string  JSON {"text": ...}, what the learner retrains on; expiry TAGGER_DOC_TTL_S
    tagger:recent           zset    id -> message timestamp (ms) of the last RECENT_KEEP documents written,
                                    for the review page's "recently tagged" list
    tagger:corrections      stream  submitted corrections (fields: id, add, remove, user, ts)
    tagger:corrections:rejected  hash  reason -> count of corrections the learner refused
    tagger:ratelimit:{user}:{minute}  string  corrections a user submitted in that minute (expires)
    tagger:examples         hash    id -> JSON {"text", "labels", "user", "ts"}: the learner's examples
    tagger:labels:proposed  zset    new label -> when a correction last added it (ms since the epoch)
    tagger:label:{name}:users  set  distinct users who added that new label; expires TAGGER_LABEL_TTL_S
                                    after its last use
    tagger:labels:allowed   set     new labels admitted by an operator (``tagger labels add``)

The corrections stream is read by the consumer group ``LEARNERS``.

A document's two keys share the Redis Cluster hash tag ``{id}``, so they live in one slot and the
worker's write script, which touches both, stays one atomic call on one node. An id containing ``}``
would end the hash tag early (an id starting with ``}`` would leave it empty, and the two keys would
hash apart), so such ids are tagged with a digest instead: ``{#<sha1 of the id, 20 hex digits>}``. Every
other key is written on its own, so it may live anywhere.

Until the schema change (2026-12) a document's keys were ``tagger:tags:<id>`` and ``tagger:doc:<id>``;
``tagger store migrate`` renames them in place (:func:`migrated_key`).
"""

from __future__ import annotations

import hashlib

__all__ = ["CORRECTIONS", "EXAMPLES", "LABELS_ALLOWED", "LABELS_PROPOSED", "LEARNERS", "LEGACY_PATTERNS", "RECENT",
           "RECENT_KEEP", "REJECTED", "doc_key", "label_users_key", "migrated_key", "rate_key", "slot_tag", "tags_key"]

CORRECTIONS = "tagger:corrections"
REJECTED = "tagger:corrections:rejected"
EXAMPLES = "tagger:examples"
LEARNERS = "learners"  # the corrections stream's consumer group
LABELS_PROPOSED = "tagger:labels:proposed"
LABELS_ALLOWED = "tagger:labels:allowed"
RECENT = "tagger:recent"
RECENT_KEEP = 1000  # entries kept in RECENT: a page of recent documents, not a log


def slot_tag(doc_id: str) -> str:
    """The Redis Cluster hash tag of a document's keys, braces included.

    >>> slot_tag("reuters-17"), slot_tag("}odd{id}")
    ('{reuters-17}', '{#73caa7a040637128f350}')
    """
    if "}" in doc_id:
        return "{#" + hashlib.sha1(doc_id.encode()).hexdigest()[:20] + "}"
    return "{" + doc_id + "}"


def tags_key(doc_id: str) -> str:
    """The hash holding a document's tags."""
    return f"tagger:{slot_tag(doc_id)}:tags"


def doc_key(doc_id: str) -> str:
    """The string holding a document's text."""
    return f"tagger:{slot_tag(doc_id)}:doc"


# The keys of the schema before hash tags: SCAN patterns, and the new key of an old one.
LEGACY_PATTERNS = ("tagger:tags:*", "tagger:doc:*")


def migrated_key(old: str) -> str | None:
    """The current key of a pre-hash-tag key (``tagger:tags:<id>`` → ``tagger:{<id>}:tags``); None otherwise.

    >>> migrated_key("tagger:tags:r1"), migrated_key("tagger:doc:a:b"), migrated_key("tagger:corrections")
    ('tagger:{r1}:tags', 'tagger:{a:b}:doc', None)
    """
    for prefix, new in (("tagger:tags:", tags_key), ("tagger:doc:", doc_key)):
        if old.startswith(prefix) and len(old) > len(prefix):
            return new(old[len(prefix):])
    return None


def rate_key(user: str, minute: int) -> str:
    """A user's correction count in one minute (minutes since the epoch)."""
    return f"tagger:ratelimit:{user}:{minute}"


def label_users_key(name: str) -> str:
    """The set of users who added new label ``name`` in a correction."""
    return f"tagger:label:{name}:users"
