"""The message decoder: every kind of bad input gets its reason; fuzzed, it never raises anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.stream.messages import MAX_ID_CHARS, REASONS, BadMessage, Document, decode_document, encodable, is_text

LIMIT = 1000


def test_a_good_document_with_title() -> None:
    value = json.dumps({"id": "d1", "title": "Title", "text": "body"}).encode()
    assert decode_document(value, LIMIT) == Document("d1", "Title\nbody")


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "empty"),
    (None, "empty"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"{nope", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"text": "t"}', "bad_id"),
    (b'{"id": 3, "text": "t"}', "bad_id"),
    (b'{"id": "", "text": "t"}', "bad_id"),
    (json.dumps({"id": "x" * 600, "text": "t"}).encode(), "bad_id"),
    (b'{"id": "a"}', "bad_text"),
    (b'{"id": "a", "text": ["t"]}', "bad_text"),
    (b'{"id": "a", "text": "t", "title": 1}', "bad_title"),
    (b'{"id": "a", "text": " \\n\\t"}', "empty_text"),
    (json.dumps({"id": "a", "text": "w " * 600}).encode(), "too_large"),
])
def test_bad_input_reasons(value: bytes | None, reason: str) -> None:
    with pytest.raises(BadMessage) as caught:
        decode_document(value, LIMIT)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_json_nested_past_the_recursion_limit_is_invalid() -> None:
    with pytest.raises(BadMessage, match="nested too deeply"):
        decode_document(b"[" * 5000 + b"]" * 5000, 100_000)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_fail_cleanly(value: bytes) -> None:
    try:
        document = decode_document(value, LIMIT)
    except BadMessage:
        return
    assert isinstance(document.id, str) and document.text.strip()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["id", "text", "title", "other"]), _json, max_size=4))
def test_arbitrary_json_objects_decode_or_fail_cleanly(record: dict[str, object]) -> None:
    try:
        document = decode_document(json.dumps(record).encode(), LIMIT)
    except BadMessage as bad:
        assert bad.reason in {"bad_id", "bad_text", "bad_title", "empty_text", "too_large"}
        return
    assert document.id == record["id"]


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"id": ' + b"9" * 5000 + b', "text": "t"}', "invalid_json"),  # past the 4,300-digit int limit
    (b'{"id": "a", "text": "t", "n": ' + b"9" * 5000 + b"}", "invalid_json"),
    (b'{"id": "a\\ud800", "text": "t"}', "bad_id"),  # valid JSON, but no UTF-8 encoding: Redis cannot store it
    (b'{"id": "a", "text": "t \\udfff"}', "bad_text"),
    (b'{"id": "a", "text": "t", "title": "\\ud800"}', "bad_title"),
    (b"\xef\xbb\xbf" + b'{"id": "a", "text": "t"}', "invalid_json"),
])
def test_inputs_that_once_escaped_the_decoder(value: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as caught:
        decode_document(value, 100_000)
    assert caught.value.reason == reason


def test_control_characters_are_text() -> None:
    document = decode_document(json.dumps({"id": "c\x00", "text": "\x01oil\x1b[0m"}).encode(), LIMIT)
    assert document == Document("c\x00", "\x01oil\x1b[0m")


_any_char = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", " "])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["id", "text", "title"]), st.text(alphabet=_any_char, max_size=10), max_size=3))
def test_every_accepted_document_can_be_stored(record: dict[str, object]) -> None:
    """Surrogates included: what the decoder accepts always encodes to UTF-8 (as Redis needs)."""
    try:
        document = decode_document(json.dumps(record).encode(), LIMIT)
    except BadMessage as bad:
        assert bad.reason in REASONS
        return
    document.id.encode("utf-8")
    document.text.encode("utf-8")


def test_every_kind_of_the_poison_corpus_gets_its_reason() -> None:
    from benchmarks.poison import poison_cases

    for case in poison_cases("unit", huge=True):
        try:
            decode_document(case.value, 200_000)
            got = None
        except BadMessage as bad:
            got = bad.reason
        assert got == case.reason, case.kind


def test_an_id_may_hold_max_id_chars_and_no_more() -> None:
    assert decode_document(json.dumps({"id": "x" * MAX_ID_CHARS, "text": "t"}).encode(), 10_000).id == "x" * 512
    with pytest.raises(BadMessage, match="at most 512 characters"):
        decode_document(json.dumps({"id": "x" * (MAX_ID_CHARS + 1), "text": "t"}).encode(), 10_000)


@pytest.mark.parametrize(("value", "expected"), [
    ("doc-1", True), ("é東", True), ("", False), ("x" * 513, False), (7, False), (None, False), ("a\ud800", False)])
def test_is_text_is_a_non_empty_bounded_storable_string(value: object, expected: bool) -> None:
    assert is_text(value, MAX_ID_CHARS) is expected


def test_only_unpaired_surrogates_are_not_encodable() -> None:
    assert all(encodable(text) for text in ("", "é東", "\x00", "\U0001f600"))  # an emoji: a pair in UTF-16, fine
    assert not encodable("\ud800") and not encodable("a\udfffb")
