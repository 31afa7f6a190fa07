"""Step 3 off the loop's thread: the model tags batch n while the loop consumes batch n+1 and writes n-1.

One prediction thread, at most one batch in flight. Featurizing and the model call are pure functions of
the batch and the model chosen when the batch is launched, so nothing the loop guarantees moves here:
Kafka and Redis are touched by the loop's thread only (kafka-python's consumer is not thread-safe), in
the same order as before. Torch releases the GIL during the model call and socket I/O releases it
during the Redis round trip, so the two threads overlap on two cores.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from worker.store.writer import TagRecord
from worker.stream.batcher import Batch
from worker.stream.tagging import Tagging
from worker.stream.watcher import ModelWatcher

__all__ = ["Predicted", "Predictor"]

log = logging.getLogger(__name__)


class Predicted(NamedTuple):
    """A batch, the version of the model that tagged it, and its records (one per good document)."""

    batch: Batch
    version: str
    records: list[TagRecord]


class _InFlight(NamedTuple):
    batch: Batch
    version: str
    future: Future[list[TagRecord]]


class Predictor:
    """Runs :meth:`Tagging.predict` for one batch at a time on a background thread."""

    def __init__(self, tagging: Tagging, models: ModelWatcher) -> None:
        self.tagging, self.models = tagging, models
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger-predict")
        self.in_flight: _InFlight | None = None

    def busy(self) -> bool:
        """Whether a batch is in flight (launched and not yet taken)."""
        return self.in_flight is not None

    def done(self) -> bool:
        """Whether the batch in flight has its tags (taking it will not wait)."""
        return self.in_flight is not None and self.in_flight.future.done()

    def launch(self, batch: Batch) -> None:
        """Tag ``batch`` in the background with the newest loaded model (swapped in here, between batches)."""
        if self.in_flight is not None:
            raise RuntimeError("a batch is already in flight: take it first")
        self.models.swap()
        tagger = self.models.served
        self.in_flight = _InFlight(batch, tagger.version, self.executor.submit(self.tagging.predict, tagger, batch))

    def take(self) -> Predicted | None:
        """The batch in flight with its records, waiting for them; None when nothing is in flight.

        An exception raised by the model is raised here, on the loop's thread."""
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is None:
            return None
        return Predicted(in_flight.batch, in_flight.version, in_flight.future.result())

    def discard(self) -> None:
        """Forget the batch in flight (its offsets are never committed; it will be consumed again)."""
        if self.in_flight is not None:
            self.in_flight.future.cancel()
            self.in_flight = None

    def close(self) -> None:
        """Stop the prediction thread once the batch it may be tagging is done (bounded: pure compute)."""
        self.discard()
        self.executor.shutdown(wait=True)
