"""Deadline and Backoff on a fake clock: the bounds on a flush's retries, computed by hand."""

from __future__ import annotations

import math
import threading

import pytest

from tests.support.clock import FakeClock
from worker.stream.deadline import Abandoned, Backoff, Deadline


def test_a_deadline_counts_down_and_expires() -> None:
    clock = FakeClock()
    deadline = Deadline.from_timeout(2.0, clock)
    assert deadline.bounded and deadline.remaining() == 2.0 and not deadline.expired()
    assert deadline.allows(2.0) and not deadline.allows(2.5)
    clock.now = 101.5
    assert deadline.remaining() == 0.5 and not deadline.expired()
    clock.now = 102.0
    assert deadline.remaining() == 0.0 and deadline.expired()
    clock.now = 105.0
    assert deadline.remaining() == 0.0  # never negative


def test_an_unbounded_deadline_never_expires() -> None:
    clock = FakeClock()
    deadline = Deadline.unbounded(clock)
    clock.now = 1e12
    assert not deadline.bounded and deadline.remaining() == math.inf
    assert not deadline.expired() and deadline.allows(1e12)


def test_a_zero_timeout_is_already_due() -> None:
    deadline = Deadline.from_timeout(0, FakeClock())
    assert deadline.expired() and deadline.allows(0) and not deadline.allows(0.1)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(Deadline.unbounded(FakeClock()), threading.Event(), shutdown_timeout_s=1.0, max_s=0.5)
    assert [backoff.next_delay(OSError()) for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_backoff_gives_up_when_the_next_retry_would_pass_the_deadline() -> None:
    clock = FakeClock()
    backoff = Backoff(Deadline.from_timeout(0.5, clock), threading.Event(), shutdown_timeout_s=10.0, max_s=5.0)
    err = ConnectionError("redis away")
    for expected in (0.1, 0.2):  # retries at 100.1 and 100.3; the next would be at 100.7 > 100.5
        delay = backoff.next_delay(err)
        assert delay == expected
        clock.now += delay
    with pytest.raises(Abandoned) as caught:
        backoff.next_delay(err)
    assert caught.value.__cause__ is err


def test_a_passed_deadline_allows_no_retry_at_all() -> None:
    backoff = Backoff(Deadline.from_timeout(0, FakeClock()), threading.Event(), shutdown_timeout_s=10.0, max_s=5.0)
    with pytest.raises(Abandoned):
        backoff.next_delay(OSError())


def test_stopping_bounds_an_unbounded_step_by_the_shutdown_timeout() -> None:
    clock, stopping = FakeClock(), threading.Event()
    backoff = Backoff(Deadline.unbounded(clock), stopping, shutdown_timeout_s=0.25, max_s=5.0)
    clock.now += backoff.next_delay(OSError())  # not stopping: no bound yet
    stopping.set()
    assert backoff.next_delay(OSError()) == 0.2  # bound now at 100.1 + 0.25 = 100.35; 100.3 fits
    clock.now += 0.2
    with pytest.raises(Abandoned):  # 100.3 + 0.4 = 100.7 would not
        backoff.next_delay(OSError())


def test_without_a_deadline_or_a_stop_a_step_retries_for_ever() -> None:
    clock = FakeClock()
    backoff = Backoff(Deadline.unbounded(clock), threading.Event(), shutdown_timeout_s=0.0, max_s=5.0)
    for _ in range(100):
        clock.now += backoff.next_delay(OSError())
    assert backoff.delay == 5.0
