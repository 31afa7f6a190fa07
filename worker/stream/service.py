"""``tagger serve`` as one object: the metrics and health endpoint first, then the clients, then the loop.

/metrics and /healthz answer from construction on; /readyz fails until the clients are connected and
partitions assigned. ``stop()`` (from a signal handler) ends connecting as well as the loop.
"""

from __future__ import annotations

import logging
import threading

from worker.metrics import WorkerMetrics, serve_http
from worker.settings import Settings
from worker.stream.clients import connect
from worker.stream.loop import Worker

__all__ = ["Service"]

log = logging.getLogger(__name__)


class Service:
    """One tagging worker process; ``run()`` blocks until ``stop()`` (or a fatal error)."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.stopping = threading.Event()
        self.worker: Worker | None = None  # the loop, once its clients are connected
        ops = settings.ops
        self.http = serve_http(self.metrics.registry, ops.metrics_host, ops.metrics_port, self.ready)

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (useful when the setting was 0)."""
        return int(self.http.server_address[1])

    def ready(self) -> bool:
        """Connected, partitions assigned, record batches decoding (the /readyz check)."""
        worker = self.worker
        return worker is not None and worker.ready()

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close (safe from a signal handler)."""
        self.stopping.set()

    def run(self) -> None:
        """Connect, then poll → batch → predict → write → commit until stopped; the endpoint closes last."""
        try:
            clients = connect(self.settings, self.metrics, self.stopping)
            if clients is not None:
                self.worker = Worker(self.settings, clients, self.metrics, self.stopping)
                self.worker.run()
        finally:
            self.http.shutdown()
            self.http.server_close()
            log.info("worker stopped")
