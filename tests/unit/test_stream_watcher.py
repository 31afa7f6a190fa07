"""The model watcher: a new CURRENT version is loaded once, swapped in only by the loop, and a version that
fails to load is not retried (fake registry, loader and models: no torch, no sleeps)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from model.errors import CheckpointError
from worker.metrics import WorkerMetrics
from worker.stream.watcher import ModelWatcher


def model(version: str) -> SimpleNamespace:
    return SimpleNamespace(version=version, device="cpu")


class Registry:
    def __init__(self, current: str, broken: tuple[str, ...] = ()) -> None:
        self.now, self.broken, self.loads = current, broken, []

    def current(self) -> str:
        return self.now

    def path(self, version: str) -> Path:
        return Path("versions") / version

    def load(self, path: Path) -> SimpleNamespace:
        self.loads.append(path.name)
        if path.name in self.broken:
            raise CheckpointError(f"{path}: weights damaged")
        return model(path.name)


def _served(metrics: WorkerMetrics) -> list[str]:
    return [s.labels["version"] for m in metrics.model_info.collect() for s in m.samples if s.value == 1]


def test_a_new_version_is_loaded_once_and_served_after_the_swap() -> None:
    metrics, registry = WorkerMetrics(), Registry("v1")
    watcher = ModelWatcher(model("v1"), metrics)
    watcher.look(registry, registry.load)
    assert registry.loads == [] and not watcher.pending()
    registry.now = "v2"
    watcher.look(registry, registry.load)
    watcher.look(registry, registry.load)  # already loaded, waiting for the swap: not loaded again
    assert registry.loads == ["v2"] and watcher.pending() and watcher.served.version == "v1"
    watcher.swap()
    assert watcher.served.version == "v2" and not watcher.pending()
    assert _served(metrics) == ["v2"] and metrics.model_swaps._value.get() == 1


def test_a_version_that_fails_to_load_is_not_retried_and_the_current_one_goes_on() -> None:
    metrics, registry = WorkerMetrics(), Registry("v3", broken=("v3",))
    watcher = ModelWatcher(model("v1"), metrics)
    watcher.look(registry, registry.load)
    watcher.look(registry, registry.load)
    assert registry.loads == ["v3"] and not watcher.pending() and watcher.served.version == "v1"
    registry.now = "v4"
    watcher.look(registry, registry.load)
    watcher.swap()
    assert registry.loads == ["v3", "v4"] and watcher.served.version == "v4"


def test_going_back_to_the_served_version_before_the_swap_is_no_swap() -> None:
    metrics, registry = WorkerMetrics(), Registry("v2")
    watcher = ModelWatcher(model("v1"), metrics)
    watcher.look(registry, registry.load)
    registry.now = "v1"  # rolled back before the loop swapped v2 in
    watcher.look(registry, registry.load)
    watcher.swap()
    assert watcher.served.version == "v1" and metrics.model_swaps._value.get() == 0
    assert _served(metrics) == ["v1"]


def test_swap_without_a_new_version_changes_nothing() -> None:
    metrics = WorkerMetrics()
    watcher = ModelWatcher(model("v1"), metrics)
    watcher.swap()
    assert watcher.served.version == "v1" and metrics.model_swaps._value.get() == 0


class _Ticks(threading.Event):
    """A stop event whose wait returns at once: False ``ticks`` times, then True (stopped)."""

    def __init__(self, ticks: int) -> None:
        super().__init__()
        self.ticks = ticks

    def wait(self, timeout: float | None = None) -> bool:
        self.ticks -= 1
        return self.ticks < 0


def test_the_watch_looks_once_per_tick_until_stopped() -> None:
    registry = Registry("v2")
    watcher = ModelWatcher(model("v1"), WorkerMetrics())
    seen = []
    watcher.look = lambda versions, load: seen.append(versions.current())
    watcher.watch(registry, registry.load, _Ticks(3))
    assert seen == ["v2", "v2", "v2"]
