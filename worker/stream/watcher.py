"""The served model, and hot swaps to a registry's new ``CURRENT`` version.

When ``TAGGER_MODEL_DIR`` is a registry, a background thread looks at its ``CURRENT`` pointer every
second and loads a new version there, off the loop's thread; the loop swaps it in between batches (when
idle, or at the start of the next flush), so every batch is tagged by exactly one fully loaded model.
A version that fails to load is logged once and the current one goes on serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from model.errors import TaggerError
from model.tagger import Tagger
from worker.learn.registry import Registry, resolve
from worker.metrics import WorkerMetrics
from worker.settings import ModelSettings

__all__ = ["ModelWatcher", "Versions"]

log = logging.getLogger(__name__)


class Versions(Protocol):
    """Where model versions come from (a :class:`~worker.learn.registry.Registry`)."""

    def current(self) -> str: ...

    def path(self, version: str) -> Path: ...


def _ready(directory: Path, device: str | None) -> Tagger:
    """A model loaded with its text encoder and neighbour index (if any) ready, so neither the worker's
    readiness nor a hot swap leaves the first batch to pay for loading them."""
    tagger = Tagger.load(directory, device)
    tagger.prepare()
    return tagger


class ModelWatcher:
    """Holds the served model and a newer one loaded by the watcher thread until the loop swaps it in."""

    def __init__(self, served: Tagger, metrics: WorkerMetrics) -> None:
        self.served, self.metrics = served, metrics
        self.incoming: Tagger | None = None  # loaded by the watcher thread, taken by the loop
        self.lock = threading.Lock()
        self.wanted = self.failed = ""  # the version last asked for; the last that failed to load
        metrics.set_model(served.version, str(served.device))

    @classmethod
    def start(cls, model: ModelSettings, metrics: WorkerMetrics, stopping: threading.Event) -> ModelWatcher:
        """Load the model to serve; when ``model_dir`` is a registry, watch it (until ``stopping``)."""
        device = model.device or None
        watcher = cls(_ready(resolve(model.model_dir), device), metrics)
        if Registry.is_registry(model.model_dir):
            threading.Thread(target=watcher.watch, name="model-watcher", daemon=True,
                             args=(Registry(model.model_dir), lambda path: _ready(path, device), stopping)).start()
        return watcher

    def watch(self, versions: Versions, load: Callable[[Path], Tagger], stopping: threading.Event,
              every_s: float = 1.0) -> None:
        """Look for a new version every ``every_s`` until ``stopping`` (the watcher thread's body)."""
        while not stopping.wait(every_s):
            self.look(versions, load)

    def look(self, versions: Versions, load: Callable[[Path], Tagger]) -> None:
        """Load the current version if it is neither the latest loaded nor one that failed to load."""
        try:
            self.wanted = versions.current()
            with self.lock:
                latest = self.incoming or self.served
            if self.wanted in (latest.version, self.failed):
                return
            started = time.perf_counter()
            loaded = load(versions.path(self.wanted))
            with self.lock:
                self.incoming = loaded
            log.info("model %s loaded in %.2f s; swapping in at the next batch", self.wanted,
                     time.perf_counter() - started)
        except TaggerError as err:
            self.failed = self.wanted
            log.error("cannot load model version %s, still serving the current one: %s", self.wanted, err)

    def pending(self) -> bool:
        """Whether a newly loaded version waits to be swapped in."""
        return self.incoming is not None

    def swap(self) -> None:
        """Serve the newly loaded version, if any (the loop calls this between batches)."""
        with self.lock:
            incoming, self.incoming = self.incoming, None
            if incoming is None or incoming.version == self.served.version:
                return
            previous, self.served = self.served, incoming
        log.info("model swapped: %s -> %s", previous.version, incoming.version)
        self.metrics.set_model(incoming.version, str(incoming.device))
        self.metrics.model_swaps.inc()
