"""Micro-batches close on size, tokens, an idle poll or deadline, whichever comes first (a fake clock)."""

from __future__ import annotations

from tests.support.clock import FakeClock
from worker.stream.batcher import Batcher, Item
from worker.stream.messages import Document


def item(offset: int, words: int = 3, partition: int = 0, bad: bool = False) -> Item:
    document = None if bad else Document(f"d{offset}", " ".join(["w"] * words))
    return Item("t", partition, offset, 0, document, "invalid_json" if bad else "")


def test_closes_at_max_documents() -> None:
    batcher = Batcher(max_docs=3, max_tokens=1000, max_wait_s=10, clock=FakeClock())
    for offset in range(2):
        batcher.add(item(offset))
    assert not batcher.due()
    batcher.add(item(2))
    assert batcher.full() and batcher.due()


def test_closes_at_max_tokens() -> None:
    batcher = Batcher(max_docs=100, max_tokens=10, max_wait_s=10, clock=FakeClock())
    batcher.add(item(0, words=6))
    assert not batcher.due()
    batcher.add(item(1, words=4))
    assert batcher.due()


def test_closes_at_deadline_counted_from_the_first_record() -> None:
    clock = FakeClock()
    batcher = Batcher(max_docs=100, max_tokens=1000, max_wait_s=0.02, clock=clock)
    assert batcher.time_left() is None and not batcher.due()
    batcher.add(item(0))
    clock.now += 0.015
    batcher.add(item(1))  # a later record does not extend the deadline
    left = batcher.time_left()
    assert left is not None and abs(left - 0.005) < 1e-9
    assert not batcher.due()
    clock.now += 0.006
    assert batcher.due()


def test_an_idle_poll_closes_the_batch_before_its_deadline() -> None:
    clock = FakeClock()
    batcher = Batcher(max_docs=100, max_tokens=1000, max_wait_s=0.02, idle_wait_s=0.002, clock=clock)
    assert batcher.poll_wait() == 0.1  # nothing open: polls may wait long
    batcher.idle()  # no open batch: nothing to close
    assert not batcher.due() and batcher.batch is None
    batcher.add(item(0))
    assert batcher.poll_wait() == 0.002 and not batcher.due()
    batcher.idle()
    assert batcher.due()
    batcher.take()
    batcher.add(item(1))  # a new batch starts busy
    assert not batcher.due()
    clock.now += 0.0195
    assert abs(batcher.poll_wait() - 0.0005) < 1e-9  # never past the deadline


def test_bad_records_ride_along_without_counting() -> None:
    batcher = Batcher(max_docs=2, max_tokens=1000, max_wait_s=10, clock=FakeClock())
    batcher.add(item(0))
    batcher.add(item(1, bad=True))
    assert not batcher.full()
    batch = batcher.take()
    assert batch is not None and batch.docs == 1 and len(batch.items) == 2
    assert [i.offset for i in batch.good()] == [0]
    assert batcher.take() is None


def test_last_offsets_per_partition() -> None:
    batcher = Batcher(max_docs=10, max_tokens=1000, max_wait_s=10, clock=FakeClock())
    for offset, partition in [(5, 0), (9, 1), (6, 0), (10, 1)]:
        batcher.add(item(offset, partition=partition))
    batch = batcher.take()
    assert batch is not None and batch.last_offsets() == {("t", 0): 6, ("t", 1): 10}



def test_tokens_are_whitespace_separated_words() -> None:
    batcher = Batcher(max_docs=100, max_tokens=1000, max_wait_s=10, clock=FakeClock())
    batcher.add(Item("t", 0, 0, 0, Document("d0", "oil, gas-prices  rose\n2%")))
    batch = batcher.take()
    assert batch is not None and batch.tokens == 4  # "oil,", "gas-prices", "rose", "2%"
