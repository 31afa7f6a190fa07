"""The soak's rate: a share of the measured maximum, capped on the embedded broker (which stalls)."""

from __future__ import annotations

from argparse import Namespace

import pytest

from benchmarks.soak import soak_rate


def test_on_the_embedded_broker_the_rate_keeps_the_run_under_the_document_cap() -> None:
    args = Namespace(share=0.5, minutes=5.0, embedded_max_docs=25_000)
    rate, why = soak_rate(args, 6_000.0, embedded=True)
    assert rate == pytest.approx(25_000 / 300)  # half of 6,000 for 300 s would be 900,000 documents
    assert why is not None and "capped from 3000 to 83 docs/s" in why and "TAGGER_KAFKA_BOOTSTRAP_SERVERS" in why


def test_a_real_broker_or_a_short_run_gets_the_full_share() -> None:
    args = Namespace(share=0.5, minutes=5.0, embedded_max_docs=25_000)
    assert soak_rate(args, 6_000.0, embedded=False) == (3_000.0, None)
    assert soak_rate(args, 100.0, embedded=True) == (50.0, None)  # 15,000 documents: under the cap
