"""Decoding input messages: bytes → a valid document, or a BadMessage with a reason code.

Schema of a message value (UTF-8 JSON object)::

    {"id": "doc-123", "text": "the body ...", "title": "optional title"}

``id`` is a non-empty string of at most 512 characters; ``text`` a non-blank string; ``title`` an
optional string. The encoded message may hold at most ``max_text_bytes`` bytes. Other fields are
ignored. What happens to each kind of bad input (the DLQ ``reason``):

=====================================================  ==============================================
input                                                  outcome
=====================================================  ==============================================
no value (a tombstone) or zero bytes                   ``empty``
more than ``max_text_bytes`` bytes                     ``too_large`` (checked before parsing)
bytes that are not UTF-8                               ``invalid_utf8``
not JSON, JSON nested past Python's recursion limit,   ``invalid_json``
a number of more than 4,300 digits, a leading BOM
JSON that is not an object                             ``not_an_object``
``id`` missing, not a string, empty, too long, or      ``bad_id``
holding an unpaired surrogate escape (``"\\ud800"``)
``text`` missing or not a string (or a surrogate)      ``bad_text``
``title`` present but not a string (or a surrogate)    ``bad_title``
``text`` and ``title`` blank                           ``empty_text``
control characters, any other Unicode in the text      tagged (the tokenizer skips what is not a word)
the same ``id`` twice                                  both tagged; the newer message's tags are kept
=====================================================  ==============================================

An unpaired surrogate is valid JSON (``\\ud800``) but not valid Unicode: it cannot be encoded as UTF-8,
so Redis could store neither the key nor the text; it is refused here rather than failing the write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from model.data import join_title

__all__ = ["MAX_ID_CHARS", "REASONS", "BadMessage", "Document", "decode_document", "encodable", "is_text"]

MAX_ID_CHARS = 512  # a document id's longest length, in characters (corrections name documents by it too)
REASONS = ("empty", "too_large", "invalid_utf8", "invalid_json", "not_an_object", "bad_id", "bad_text",
           "bad_title", "empty_text")


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
    """Validate one message value; raises BadMessage naming what is wrong (and nothing else)."""
    if not value:
        raise BadMessage("empty", "message has no value")
    if len(value) > max_text_bytes:
        raise BadMessage("too_large", f"{len(value)} bytes exceeds the {max_text_bytes}-byte limit "
                         "(TAGGER_MAX_TEXT_BYTES)")
    try:
        record = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadMessage("invalid_utf8", f"{err.reason} at byte {err.start}") from err
    except json.JSONDecodeError as err:
        raise BadMessage("invalid_json", f"{err.msg} at position {err.pos}") from err
    except RecursionError as err:
        raise BadMessage("invalid_json", "nested too deeply") from err
    except ValueError as err:  # an integer literal past Python's 4,300-digit conversion limit
        raise BadMessage("invalid_json", f"number too long ({str(err)[:80]})") from err
    return _document(record)


def _document(record: Any) -> Document:
    if not isinstance(record, dict):
        raise BadMessage("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    doc_id, text, title = record.get("id"), record.get("text"), record.get("title")
    if not is_text(doc_id, MAX_ID_CHARS):
        raise BadMessage("bad_id", f'"id" must be a non-empty string of at most {MAX_ID_CHARS} characters '
                         "(valid Unicode)")
    if not isinstance(text, str) or not encodable(text):
        raise BadMessage("bad_text", '"text" must be a string of valid Unicode')
    if title is not None and (not isinstance(title, str) or not encodable(title)):
        raise BadMessage("bad_title", '"title" must be a string of valid Unicode when present')
    if not text.strip() and not (title or "").strip():
        raise BadMessage("empty_text", "document has no text")
    return Document(doc_id, join_title(title, text))


def is_text(value: object, max_chars: int) -> TypeGuard[str]:
    """A non-empty string of at most ``max_chars`` characters that Redis can store (valid Unicode).

    >>> is_text("doc-1", 5), is_text("", 5), is_text("doc-12", 5), is_text(7, 5), is_text("a\\ud800", 5)
    (True, False, False, False, False)
    """
    return isinstance(value, str) and 0 < len(value) <= max_chars and encodable(value)


def encodable(value: str) -> bool:
    """False for strings holding unpaired surrogates, which have no UTF-8 encoding.

    >>> encodable("naïve 東京"), encodable("\\udfff")
    (True, False)
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
