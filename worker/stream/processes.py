"""``tagger serve --processes N``: N workers in one consumer group, in one container, behind one endpoint.

One worker process is one Python interpreter: its loop and prediction threads share one GIL, so it uses
about one core however many the container has. With ``--processes N`` the parent starts N complete
workers (spawned, each with its own consumer in the group, so Kafka spreads the partitions over them,
its own copy of the model and its own Redis and dead-letter clients) and only supervises them:

- it serves /metrics on the configured port with every child's series, labelled ``process="0"`` ..
  ``"N-1"`` (the children serve theirs on loopback ports of their own), /healthz, and /readyz, which is
  ready when every child is;
- SIGTERM/SIGINT is passed on; each child finishes its batches, commits and leaves the group;
- when a child exits on its own (a fatal error, e.g. a flood of bad input), the others are stopped too and
  the parent exits with that child's status, so the orchestrator restarts the container instead of a
  half-sized group running on unnoticed.

Each child gets ``cores / N`` torch threads unless ``TAGGER_TORCH_THREADS`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from multiprocessing.process import BaseProcess

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from worker.metrics import serve_http
from worker.services import free_port
from worker.settings import Settings

__all__ = ["ProcessGroup"]

log = logging.getLogger(__name__)
_SCRAPE_TIMEOUT_S = 2.0
_JOIN_MARGIN_S = 10.0  # beyond the children's own shutdown timeout, before they are killed


def _child(settings: Settings, index: int, verbose: bool) -> None:
    """A child process's body: one worker until SIGTERM/SIGINT (module level: spawn pickles a reference)."""
    from worker.cli.running import configure_logging, run_until_signalled
    from worker.stream.service import Service

    configure_logging(verbose, f"[process {index}] ")
    settings.ops.apply_torch_threads()
    run_until_signalled(Service(settings))


def _get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of a GET on a child's endpoint; (0, "") when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=_SCRAPE_TIMEOUT_S) as reply:
            return int(reply.status), str(reply.read().decode())
    except OSError:  # refused, timed out, or an HTTP error status (a 503 from /readyz)
        return 0, ""


class _Children(Collector):
    """Every child's metrics, each sample labelled with its child's ``process`` index."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, port in enumerate(self.ports):
            for family in text_string_to_metric_families(_get(port, "/metrics")[1]):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "process": str(index)}, sample.value,
                                    sample.timestamp, sample.exemplar)
        yield from merged.values()


class ProcessGroup:
    """N worker processes and the endpoint in front of them; ``run()`` blocks until they have all stopped."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings, self.processes = settings, processes
        self.stopping = threading.Event()
        self.ports = [free_port() for _ in range(processes)]
        self.children: list[BaseProcess] = []
        self.exit_code = 0
        registry = CollectorRegistry()
        registry.register(_Children(self.ports))
        ops = settings.ops
        self.http = serve_http(registry, ops.metrics_host, ops.metrics_port, self.ready)

    def ready(self) -> bool:
        """Every child is up and ready (the /readyz check)."""
        started = zip(self.children, self.ports, strict=False)  # children still starting are not ready
        return len(self.children) == self.processes and all(
            child.is_alive() and _get(port, "/readyz")[0] == 200 for child, port in started)

    def stop(self) -> None:
        """Ask every child to finish its batches, commit and leave (safe from a signal handler)."""
        self.stopping.set()

    def run(self) -> None:
        """Start the children, wait for a stop or for one of them to exit, then stop them all."""
        context = multiprocessing.get_context("spawn")  # not fork: torch and client threads do not survive it
        verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG  # the children log as the parent does
        try:
            for index, port in enumerate(self.ports):
                child = context.Process(target=_child, args=(self._child_settings(port), index, verbose),
                                        name=f"tagger-worker-{index}")
                child.start()
                self.children.append(child)
            log.info("started %d worker processes: pids %s", self.processes, [c.pid for c in self.children])
            while not self.stopping.wait(0.5):
                exited = [c for c in self.children if c.exitcode is not None]
                if exited:
                    code = exited[0].exitcode or 0
                    self.exit_code = code if code >= 0 else 128 - code  # killed by signal n: 128 + n, as a shell says
                    log.error("worker process %s exited with status %s; stopping the others",
                              exited[0].name, exited[0].exitcode)
                    break
        finally:
            self._stop_children()
            self.http.shutdown()
            self.http.server_close()

    def _child_settings(self, port: int) -> Settings:
        ops = self.settings.ops
        threads = ops.torch_threads or max(1, (os.cpu_count() or 1) // self.processes)
        return dataclasses.replace(self.settings, ops=dataclasses.replace(
            ops, metrics_host="127.0.0.1", metrics_port=port, torch_threads=threads, processes=1))

    def _stop_children(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()  # SIGTERM: the child's worker finishes its batches and commits
        timeout = self.settings.stream.shutdown_timeout_s + _JOIN_MARGIN_S
        deadline = time.monotonic() + timeout
        for child in self.children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.error("worker process %s did not stop within %.0f s; killing it", child.name, timeout)
                child.kill()
                child.join()
        log.info("worker processes stopped")
