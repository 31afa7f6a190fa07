"""Property-based fuzzing of the correction validator and the stream entry codec.

Whatever a client sends (any JSON value in any field), ``validate`` raises CorrectionRejected or
nothing; every correction it accepts survives the trip through a stream entry unchanged.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.learn.corrections import (
    MAX_LABELS,
    Correction,
    CorrectionRejected,
    entry_fields,
    parse_entry,
    validate,
)

KNOWN = {"a", "b", "c", "crude oil", "ünï", "\x00"}
_char = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\x00", "\n"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(alphabet=_char, max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)
_labels = st.lists(st.sampled_from(sorted(KNOWN)) | st.text(alphabet=_char, max_size=6), max_size=8)
_fuzz = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@_fuzz
@given(_json, _json | _labels, _json | _labels, _json)
def test_any_payload_is_accepted_or_rejected_with_a_reason(doc_id: object, add: object, remove: object,
                                                          user: object) -> None:
    correction = Correction(doc_id, add, remove, user)  # type: ignore[arg-type]  # as decoded from a request
    try:
        validate(correction, KNOWN)
    except CorrectionRejected as rejected:
        assert rejected.reason and str(rejected)
        assert len(str(rejected)) < 1000
        return
    assert isinstance(doc_id, str) and isinstance(user, str)


_valid = st.builds(
    Correction,
    doc_id=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40),
    add=st.lists(st.sampled_from(sorted(KNOWN)), max_size=3, unique=True).map(tuple),
    remove=st.just(()),
    user=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
    ts=st.integers(min_value=0, max_value=2**53),
).filter(lambda c: bool(c.add))


@_fuzz
@given(_valid)
def test_a_valid_correction_round_trips_through_a_stream_entry(correction: Correction) -> None:
    validate(correction, KNOWN)
    stored = {key.encode(): value.encode("utf-8") for key, value in entry_fields(correction).items()}  # as Redis
    assert parse_entry(stored) == correction


@_fuzz
@given(st.dictionaries(st.sampled_from([b"id", b"add", b"remove", b"user", b"ts"]),
                       st.binary(max_size=20) | _json.map(lambda v: json.dumps(v).encode()), max_size=5))
def test_any_stream_entry_parses_or_is_malformed(fields: dict[bytes, bytes]) -> None:
    try:
        correction = parse_entry(fields)
    except CorrectionRejected as rejected:
        assert rejected.reason == "malformed"
        return
    assert all(isinstance(label, str) for label in (*correction.add, *correction.remove))


def test_a_huge_label_list_is_rejected_before_its_labels_are_read() -> None:
    class Exploding(list[str]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise AssertionError("labels read")

    huge = Exploding(["x"] * (MAX_LABELS + 1))
    with pytest.raises(CorrectionRejected) as caught:
        validate(Correction("d", huge, (), "u"), KNOWN)  # type: ignore[arg-type]
    assert caught.value.reason == "too_many_labels"
