"""Step 2 of the loop: each consumed record becomes a batch item, good or bad.

A bad record is dead-lettered (asynchronously) and still becomes an item, carrying its reason instead
of a document, so its offset is committed with its neighbours'. Every outcome is counted by the
bad-input guard, which stops the worker on a flood of bad input.
"""

from __future__ import annotations

from typing import Any

from worker.stream.batcher import Item
from worker.stream.dead_letters import DeadLetters
from worker.stream.guard import BadInputGuard
from worker.stream.messages import BadMessage, decode_document

__all__ = ["Intake"]


class Intake:
    """Decodes consumed records into batch items; bad ones go to the dead letters and the guard."""

    def __init__(self, max_text_bytes: int, dead_letters: DeadLetters, guard: BadInputGuard) -> None:
        self.max_text_bytes, self.dead_letters, self.guard = max_text_bytes, dead_letters, guard

    def item(self, message: Any) -> Item:
        """The batch item of a consumed ``message`` (a kafka-python ConsumerRecord); raises BadInputFlood."""
        where = (message.topic, message.partition, message.offset, message.timestamp)
        try:
            document = decode_document(message.value, self.max_text_bytes)
        except BadMessage as bad:
            self.dead_letters.send(message, bad)
            self.guard.count(bad=True, reason=bad.reason)
            return Item(*where, document=None, reason=bad.reason)
        self.guard.count(bad=False)
        return Item(*where, document=document)
