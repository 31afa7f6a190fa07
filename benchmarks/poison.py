"""The poison corpus (every kind of bad input, with the outcome each must have) and its throughput benchmark.

    python -m benchmarks.poison --data reuters [--model DIR] [--docs 20000] [--share 0.1] [--pairs 3]

:func:`poison_cases` is the one definition of bad input, used by ``tests/integration/test_bad_input.py``
and by this benchmark. Each case says what must happen to it: a DLQ ``reason``, or ``None`` for an odd
but valid document that must be tagged (control characters, other scripts, a duplicate id ...).

The benchmark drains the same backlog of good documents twice per pair, alternating: clean, then with
``--share`` of the messages poison (the dead-lettered kinds, cycled, plus one 10 MB message), each on a
fresh topic and worker, and compares good documents tagged per second (median over ``--pairs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks.poison")
TEN_MB = 10 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One message of the corpus and the outcome it must have."""

    kind: str  # what it is, e.g. "invalid_utf8_latin1"
    value: bytes | None  # None: a tombstone (no value)
    reason: str | None  # the expected DLQ reason; None: a valid document that must be tagged
    doc_id: str | None = None  # for valid documents: the id its tags are stored under
    key: bytes | None = None  # a message key (duplicates share one, so they land on one partition)


def _doc(doc_id: str, text: str, **extra: Any) -> bytes:
    return json.dumps({"id": doc_id, "text": text, **extra}).encode()


def _bad(prefix: str) -> list[tuple[str, bytes | None, str]]:
    """(kind, value, reason) of every kind that must be dead-lettered, except the 10 MB one."""
    p = prefix
    deep = 50_000  # far past Python's recursion limit, well under the default 200 kB message limit
    return [
        ("empty_value", b"", "empty"),
        ("tombstone", None, "empty"),
        ("malformed_json", b'{"id": "x", "text": "unterminated', "invalid_json"),
        ("trailing_garbage", _doc(f"{p}-tg", "oil") + b" trailing", "invalid_json"),
        ("utf8_bom", b"\xef\xbb\xbf" + _doc(f"{p}-bom", "oil"), "invalid_json"),
        ("raw_control_character", f'{{"id": "{p}-raw", "text": "a\x01b"}}'.encode(), "invalid_json"),
        ("deeply_nested_array", b"[" * deep + b"]" * deep, "invalid_json"),
        ("deeply_nested_field", b'{"id": "n", "text": "t", "meta": ' + b"[" * deep + b"]" * deep + b"}",
         "invalid_json"),
        ("integer_id_of_5000_digits", b'{"id": ' + b"7" * 5000 + b', "text": "oil"}', "invalid_json"),
        ("invalid_utf8_latin1", b'{"id": "l1", "text": "caf\xe9"}', "invalid_utf8"),
        ("invalid_utf8_encoded_surrogate", b'{"id": "s", "text": "\xed\xa0\x80"}', "invalid_utf8"),
        ("invalid_utf8_overlong", b'{"id": "o", "text": "\xc0\x80"}', "invalid_utf8"),
        ("invalid_utf8_truncated", f'{{"id": "{p}-tr", "text": "oil \u00e9"}}'.encode()[:-3], "invalid_utf8"),
        ("json_array", b'["id", "text"]', "not_an_object"),
        ("json_string", b'"just a string"', "not_an_object"),
        ("json_number", b"42", "not_an_object"),
        ("json_null", b"null", "not_an_object"),
        ("missing_id", b'{"text": "oil prices"}', "bad_id"),
        ("integer_id", b'{"id": 42, "text": "oil"}', "bad_id"),
        ("float_id", b'{"id": 4.2, "text": "oil"}', "bad_id"),
        ("boolean_id", b'{"id": true, "text": "oil"}', "bad_id"),
        ("null_id", b'{"id": null, "text": "oil"}', "bad_id"),
        ("list_id", b'{"id": ["a"], "text": "oil"}', "bad_id"),
        ("object_id", b'{"id": {"a": 1}, "text": "oil"}', "bad_id"),
        ("empty_id", b'{"id": "", "text": "oil"}', "bad_id"),
        ("id_of_513_characters", _doc("i" * 513, "oil"), "bad_id"),
        ("unpaired_surrogate_in_id", b'{"id": "x\\ud800", "text": "oil"}', "bad_id"),
        ("missing_text", _doc_without_text(f"{p}-mt"), "bad_text"),
        ("number_text", b'{"id": "nt", "text": 12}', "bad_text"),
        ("list_text", b'{"id": "lt", "text": ["oil"]}', "bad_text"),
        ("null_text", b'{"id": "nu", "text": null}', "bad_text"),
        ("unpaired_surrogate_in_text", b'{"id": "st", "text": "oil \\udc00"}', "bad_text"),
        ("number_title", b'{"id": "ti", "text": "oil", "title": 7}', "bad_title"),
        ("empty_text", _doc(f"{p}-et", ""), "empty_text"),
        ("blank_text", _doc(f"{p}-bt", " \n\t\u3000 "), "empty_text"),
    ]


def _doc_without_text(doc_id: str) -> bytes:
    return json.dumps({"id": doc_id, "title": "a title but no text field"}).encode()


def _valid_oddities(prefix: str) -> list[tuple[str, str, bytes]]:
    """(kind, id, value) of strange but valid documents: each must be tagged, none dead-lettered."""
    p = prefix
    nested = {"meta": json.loads("[" * 100 + "]" * 100)}  # shallow enough to parse: extra fields are ignored
    return [
        ("control_characters_escaped", f"{p}-ctl", _doc(f"{p}-ctl", "crude \x00\x01\x07 oil \x1b[31m prices \x7f")),
        ("control_characters_only", f"{p}-ctl-only", _doc(f"{p}-ctl-only", "\x01\x02\x03\x1f")),
        ("control_characters_in_id", f"{p}-id\x00\x1f", _doc(f"{p}-id\x00\x1f", "wheat exports")),
        ("other_scripts_and_emoji", f"{p}-uni", _doc(f"{p}-uni", "原油价格 سعر النفط 🛢️ e\u0301 oil prices")),
        ("title_without_text", f"{p}-title", _doc(f"{p}-title", "", title="Oil prices rise")),
        ("unknown_extra_fields", f"{p}-extra", _doc(f"{p}-extra", "oil", **nested)),
    ]


def poison_cases(prefix: str, huge: bool = True) -> list[Case]:
    """Every bad kind (with its DLQ reason) and every valid oddity, plus a duplicated id (both valid:
    the later message's tags win). With ``huge``, one 10 MB document (``too_large``) too. Ids start
    with ``prefix`` so they are unique to one stream."""
    cases = [Case(kind, value, reason, key=b"tombstone" if value is None else None)
             for kind, value, reason in _bad(prefix)]
    if huge:
        cases.append(Case("ten_megabyte_text", _doc(f"{prefix}-huge", "oil " * (TEN_MB // 4)), "too_large"))
    cases += [Case(kind, value, None, doc_id, doc_id.encode()) for kind, doc_id, value in _valid_oddities(prefix)]
    dup = f"{prefix}-dup"
    cases += [Case("duplicate_id_first", _doc(dup, "wheat corn grain harvest"), None, dup, dup.encode()),
              Case("duplicate_id_second", _doc(dup, "crude oil barrels opec"), None, dup, dup.encode())]
    return cases


def interleave(good: Sequence[Case], bad: Sequence[Case]) -> list[Case]:
    """Spread ``bad`` evenly among ``good`` (order within each kept), starting with a good message."""
    out: list[Case] = []
    placed = 0
    for i, case in enumerate(good):
        out.append(case)
        while placed < len(bad) and placed < (i + 1) * len(bad) / len(good):
            out.append(bad[placed])
            placed += 1
    return out + list(bad[placed:])


def poisoned_stream(good: Sequence[Case], share: float, prefix: str, huge: bool = True) -> list[Case]:
    """``good`` with dead-lettered kinds cycled in until they are ``share`` of all messages (one 10 MB
    message among them with ``huge``, placed half-way)."""
    kinds = [case for case in poison_cases(prefix, huge=False) if case.reason is not None]
    n_bad = round(len(good) * share / (1 - share))
    bad = [kinds[i % len(kinds)] for i in range(n_bad)]
    if huge and bad:
        bad[len(bad) // 2] = next(c for c in poison_cases(prefix) if c.kind == "ten_megabyte_text")
    return interleave(good, bad)


# ---------------------------------------------------------------------------------------------- benchmark


def _good(texts: Sequence[str], n: int, run: str) -> list[Case]:
    return [Case("good", json.dumps({"id": f"{run}-{i}", "text": texts[i % len(texts)]}).encode(), None,
                 f"{run}-{i}") for i in range(n)]


def _produce(broker: str, topic: str, cases: Sequence[Case]) -> None:
    from worker.settings import KafkaSettings
    from worker.stream import kafka as kafka_clients

    producer = kafka_clients.producer(KafkaSettings(kafka_bootstrap_servers=broker), acks=1)
    for case in cases:
        producer.send(topic, value=case.value, key=case.key)
    producer.flush()
    producer.close()


def _drain(broker: Any, redis: Any, model: Path, cases: list[Case], n_good: int, workdir: Path) -> float:
    """Good documents tagged per second while a fresh worker drains ``cases`` from a fresh topic."""
    from benchmarks.stream import PARTITIONS, WorkerRun
    from worker.settings import KafkaSettings
    from worker.stream.kafka import create_topic

    topic = f"poison-{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(kafka_bootstrap_servers=broker.address)
    create_topic(settings, topic, PARTITIONS)
    create_topic(settings, f"{topic}.dlq", 1)
    _produce(broker.address, topic, cases)
    worker = WorkerRun(broker, redis, model, topic, workdir / f"{topic}.log")
    try:
        return worker.drain_rate(n_good, 600)
    finally:
        worker.terminate()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Alternating clean and poisoned drains of the same good documents; medians and their ratio."""
    from benchmarks.quality import DATASETS
    from benchmarks.stream import model_for, services

    train_corpus, test = DATASETS[args.data].load()
    workdir = Path(tempfile.mkdtemp(prefix="poison-bench-"))
    model = args.model or model_for(train_corpus, workdir / "model", args.epochs)
    texts = test.texts or []
    clean_rates, poison_rates = [], []
    with services(workdir) as (broker, redis):
        for pair in range(args.pairs):
            good = _good(texts, args.docs, f"clean{pair}")
            clean_rates.append(_drain(broker, redis, model, good, args.docs, workdir))
            good = _good(texts, args.docs, f"poison{pair}")
            mixed = poisoned_stream(good, args.share, f"p{pair}", huge=not args.no_huge)
            poison_rates.append(_drain(broker, redis, model, mixed, args.docs, workdir))
            log.info("pair %d: clean %.0f docs/s, with poison %.0f docs/s", pair, clean_rates[-1], poison_rates[-1])
    clean, poisoned = statistics.median(clean_rates), statistics.median(poison_rates)
    return {"data": args.data, "good_docs": args.docs, "poison_share": args.share,
            "poison_messages": len(mixed) - args.docs, "ten_mb_message": not args.no_huge,
            "clean_docs_per_s": clean_rates, "poison_docs_per_s": poison_rates,
            "median_clean": clean, "median_poison": poisoned, "poison_over_clean": poisoned / clean}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the result as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default="reuters", help="a dataset of benchmarks.quality")
    parser.add_argument("--model", type=Path, help="a checkpoint to serve instead of training one")
    parser.add_argument("--docs", type=int, default=20_000, help="good documents per drain")
    parser.add_argument("--share", type=float, default=0.1, help="share of poison among all messages")
    parser.add_argument("--pairs", type=int, default=3, help="alternating clean/poisoned drains")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (speed does not depend on it)")
    parser.add_argument("--no-huge", action="store_true", help="leave out the one 10 MB message")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    result = run(args)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
