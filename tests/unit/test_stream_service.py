"""``tagger serve`` from the outside: the endpoint answers while connecting, /readyz fails until the loop
runs, and a stop while connecting ends the run cleanly, closing what was connected."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from kafka.errors import KafkaConfigurationError

from worker.metrics import WorkerMetrics
from worker.settings import OpsSettings, Settings
from worker.stream import clients as clients_module
from worker.stream import service as service_module
from worker.stream.service import Service


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_the_endpoint_answers_while_connecting_and_a_stop_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}

    def connect(settings: Settings, metrics: WorkerMetrics, stopping: threading.Event) -> None:
        seen["healthz"], seen["readyz"] = _get(service.metrics_port, "/healthz"), _get(service.metrics_port, "/readyz")
        service.stop()  # SIGTERM while connecting: connect_with_backoff returns None
        seen["stopping"] = stopping.is_set()

    monkeypatch.setattr(service_module, "connect", connect)
    service = Service(Settings(ops=OpsSettings(metrics_host="127.0.0.1", metrics_port=0)))
    service.run()
    assert seen == {"healthz": 200, "readyz": 503, "stopping": True}
    assert not service.ready() and service.worker is None
    assert service.http.socket.fileno() == -1  # the endpoint closed when the run ended


class _Producer:
    def __init__(self) -> None:
        self.closed = False

    def close(self, timeout: float) -> None:
        self.closed = True


@pytest.mark.parametrize("stopped_at", ["producer", "consumer", "consumer error"])
def test_connecting_returns_nothing_when_stopped_and_closes_the_producer(
        monkeypatch: pytest.MonkeyPatch, stopped_at: str) -> None:
    producer = _Producer()

    def connect_with_backoff(factory: Any, stop: threading.Event, what: str) -> Any:
        if what == "consumer" and stopped_at == "consumer error":
            raise KafkaConfigurationError("bad consumer option")
        if what == "consumer":
            return None
        return None if stopped_at == "producer" else producer

    monkeypatch.setattr(clients_module.ModelWatcher, "start", lambda *args: "models")
    monkeypatch.setattr(clients_module, "connect_redis", lambda redis: "redis")
    monkeypatch.setattr(clients_module, "TagWriter", lambda *args: "writer")
    monkeypatch.setattr(clients_module.kafka, "connect_with_backoff", connect_with_backoff)
    if stopped_at == "consumer error":
        with pytest.raises(KafkaConfigurationError):
            clients_module.connect(Settings(), WorkerMetrics(), threading.Event())
    else:
        assert clients_module.connect(Settings(), WorkerMetrics(), threading.Event()) is None
    assert producer.closed == (stopped_at != "producer")
