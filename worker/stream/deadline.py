"""How long a step may take: a :class:`Deadline`, and the :class:`Backoff` of a step that retries within one.

A flush runs with a deadline: unbounded in normal operation, ``shutdown_timeout_s`` from now when stopping,
and already passed during a rebalance (no retry at all: the partitions' next owner gets the batch). A
retrying step (the Redis write, the dead-letter flush) asks its :class:`Backoff` for each pause; the
backoff raises :class:`Abandoned` once the next retry would come after the deadline, and gives an
unbounded deadline a bound of ``shutdown_timeout_s`` as soon as the worker is stopping, so an outage
cannot hold a shutdown.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["KAFKA_RETRY_MAX_S", "Abandoned", "Backoff", "Deadline"]

KAFKA_RETRY_MAX_S = 5.0  # longest pause between retries against an unreachable broker (commits, dead letters)


class Abandoned(Exception):
    """A batch could not be written in time; it stays uncommitted and will be consumed again."""


class Deadline:
    """A point in time on ``clock`` (``math.inf`` when unbounded) that steps check against.

    >>> now = [10.0]
    >>> deadline = Deadline.from_timeout(2.0, clock=lambda: now[0])
    >>> deadline.remaining(), deadline.expired(), deadline.allows(2.5)
    (2.0, False, False)
    >>> now[0] = 13.0
    >>> deadline.remaining(), deadline.expired()
    (0.0, True)
    """

    def __init__(self, at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.at, self.clock = at, clock

    @classmethod
    def from_timeout(cls, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline ``timeout_s`` seconds from now (0: already due, no retry allowed)."""
        return cls(clock() + timeout_s, clock)

    @classmethod
    def unbounded(cls, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """No deadline: a step may retry for as long as it takes."""
        return cls(math.inf, clock)

    @property
    def bounded(self) -> bool:
        """Whether there is a deadline at all."""
        return self.at != math.inf

    def remaining(self) -> float:
        """Seconds left (0 once passed; ``math.inf`` when unbounded)."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.clock() >= self.at

    def allows(self, delay_s: float) -> bool:
        """Whether something ``delay_s`` seconds from now still comes before the deadline."""
        return self.clock() + delay_s <= self.at


class Backoff:
    """Exponential pauses (``first_s``, doubling up to ``max_s``) between the retries of one step."""

    def __init__(self, deadline: Deadline, stopping: threading.Event, shutdown_timeout_s: float, max_s: float,
                 first_s: float = 0.1) -> None:
        self.deadline, self.stopping, self.shutdown_timeout_s = deadline, stopping, shutdown_timeout_s
        self.delay, self.max_s = first_s, max_s

    def next_delay(self, err: Exception) -> float:
        """The pause before the next retry; raises Abandoned (from ``err``) if that retry would be too late."""
        if not self.deadline.bounded and self.stopping.is_set():  # stopping: an outage must not hold the shutdown
            self.deadline = Deadline.from_timeout(self.shutdown_timeout_s, self.deadline.clock)
        if not self.deadline.allows(self.delay):
            raise Abandoned from err
        delay, self.delay = self.delay, min(self.delay * 2, self.max_s)
        return delay
