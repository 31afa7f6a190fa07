"""A fake monotonic clock for code that takes one (``clock=``): time moves only when a test moves it."""

from __future__ import annotations


class FakeClock:
    """Returns ``now``; tests advance it by assigning ``now`` (starts at 100.0, not 0, like a real clock)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
