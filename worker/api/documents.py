"""Reads for the review page: one document (its text and tags) and the recently tagged documents.

The recently tagged documents come from the sorted set ``tagger:recent`` (id -> message timestamp, ms),
which the worker's tag writer keeps, capped, in the same round trip as the tags (worker/store/writer.py).
Nothing here scans the key space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from worker.api.store import AsyncClient, read_document_raw, recent_raw
from worker.store.client import TagResult, read_result
from worker.store.keys import RECENT

__all__ = ["Document", "read_document", "recent_ids"]


@dataclass(frozen=True)
class Document:
    """A stored document: its text (None once expired) and its tags (None when never tagged or expired)."""

    doc_id: str
    text: str | None
    result: TagResult | None


async def read_document(client: AsyncClient, doc_id: str) -> Document | None:
    """The document's text and tags in one round trip; None when Redis holds neither."""
    raw_tags, raw_doc = await read_document_raw(client, doc_id)
    result, text = read_result(raw_tags), _text(raw_doc)
    return None if result is None and text is None else Document(doc_id, text, result)


def _text(raw: bytes | None) -> str | None:
    """The text of a document's stored value (JSON {"text": ...}); None when absent or unreadable."""
    if raw is None:
        return None
    try:
        text = json.loads(raw).get("text")
    except (ValueError, AttributeError):
        return None
    return text if isinstance(text, str) else None


async def recent_ids(client: AsyncClient, limit: int) -> list[tuple[str, int]]:
    """The ``limit`` most recently tagged ids with their message timestamps (ms), newest first."""
    return [(member.decode(errors="replace"), int(score)) for member, score in await recent_raw(client, RECENT, limit)]
