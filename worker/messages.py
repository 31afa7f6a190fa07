"""Decoding input messages: bytes → a valid document, or a BadMessage with a reason code.

Schema of a message value (UTF-8 JSON object)::

    {"id": "doc-123", "text": "the body ...", "title": "optional title"}

``id`` is a non-empty string of at most 512 characters; ``text`` a non-blank string; ``title`` an
optional string. The encoded message may hold at most ``max_text_bytes`` bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model.data import join_title

__all__ = ["BadMessage", "Document", "decode_document"]

MAX_ID_CHARS = 512


@dataclass(frozen=True)
class Document:
    """A valid input document; ``text`` includes the title when one was given."""

    id: str
    text: str


class BadMessage(ValueError):
    """A message that cannot be tagged; ``reason`` is a short code for metrics and the DLQ header."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_document(value: bytes | None, max_text_bytes: int) -> Document:
    """Validate one message value; raises BadMessage naming what is wrong."""
    if not value:
        raise BadMessage("empty", "message has no value")
    if len(value) > max_text_bytes:
        raise BadMessage("too_large", f"{len(value)} bytes exceeds the {max_text_bytes}-byte limit")
    try:
        record = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadMessage("invalid_utf8", f"{err.reason} at byte {err.start}") from err
    except (json.JSONDecodeError, RecursionError) as err:
        detail = f"{err.msg} at position {err.pos}" if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        raise BadMessage("invalid_json", detail) from err
    return _document(record)


def _document(record: Any) -> Document:
    if not isinstance(record, dict):
        raise BadMessage("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    doc_id, text, title = record.get("id"), record.get("text"), record.get("title")
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_CHARS:
        raise BadMessage("bad_id", f'"id" must be a non-empty string of at most {MAX_ID_CHARS} characters')
    if not isinstance(text, str):
        raise BadMessage("bad_text", '"text" must be a string')
    if title is not None and not isinstance(title, str):
        raise BadMessage("bad_title", '"title" must be a string when present')
    if not text.strip() and not (title or "").strip():
        raise BadMessage("empty_text", "document has no text")
    return Document(doc_id, join_title(title, text))
