"""The bad-input guard: stop the worker when too large a share of recent messages was bad.

A few bad messages are dead-lettered and the stream goes on; a flood of them (more than
``bad_share_limit`` of the last ``bad_window``) most likely means a misconfigured topic or producer, and
tagging on would only fill the dead-letter topic, so the worker stops with a message saying what to check.
"""

from __future__ import annotations

from collections import deque

from model.errors import TaggerError

__all__ = ["BadInputFlood", "BadInputGuard"]


class BadInputFlood(TaggerError):
    """Too large a share of recent messages was bad: most likely a misconfigured topic or producer."""


class BadInputGuard:
    """A sliding window over the last ``window`` messages' outcomes (bad or not)."""

    def __init__(self, window: int, share_limit: float, topic: str, dlq_topic: str) -> None:
        self.recent: deque[bool] = deque(maxlen=window)
        self.bad = 0  # running count of True in ``recent``: O(1) per message, not a sum
        self.share_limit, self.topic, self.dlq_topic = share_limit, topic, dlq_topic

    def count(self, bad: bool, reason: str = "") -> None:
        """Record one message's outcome; raises BadInputFlood when the full window holds too many bad ones."""
        if len(self.recent) == self.recent.maxlen:  # the oldest outcome leaves the window
            self.bad -= self.recent[0]
        self.recent.append(bad)
        self.bad += bad
        if bad and len(self.recent) == self.recent.maxlen and self.bad > self.share_limit * len(self.recent):
            raise BadInputFlood(
                f"{self.bad} of the last {len(self.recent)} messages on {self.topic!r} were bad (latest: {reason}); "
                f"check the topic and the producers' message format (see the DLQ {self.dlq_topic!r}), or raise "
                "TAGGER_BAD_SHARE_LIMIT")
