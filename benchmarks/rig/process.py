"""A ``tagger`` command (``serve``, ``learn``) in a child process, watched through its HTTP endpoint.

Part of the rig that tests and benchmarks drive the worker with; it is not shipped in the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from worker.services import die_with_parent, free_port

__all__ = ["ServeProcess"]

_ROOT = Path(__file__).resolve().parents[2]  # the source checkout: ``python -m worker.cli`` runs from it


class ServeProcess:
    """``tagger serve`` (or another long-running command, e.g. ``learn``) in a child process, for tests and
    benchmarks, configured by ``TAGGER_*`` settings, with its /metrics, /healthz and /readyz endpoint on a
    free loopback port."""

    def __init__(self, settings: dict[str, str], log_path: Path, command: str = "serve",
                 cpus: frozenset[int] | None = None) -> None:
        self.metrics_port = free_port()
        env = {**os.environ, **settings, "TAGGER_METRICS_HOST": "127.0.0.1",
               "TAGGER_METRICS_PORT": str(self.metrics_port)}
        self.log_path = log_path

        def start_child() -> None:
            die_with_parent()
            if cpus:  # before exec, so every thread of the child inherits it
                os.sched_setaffinity(0, cpus)

        with log_path.open("ab") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "worker.cli", command], cwd=_ROOT, env=env,
                                            stdout=output, stderr=subprocess.STDOUT, preexec_fn=start_child)

    def get(self, path: str) -> tuple[int, str]:
        """(HTTP status, body) of a GET on the worker's endpoint; (0, "") when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as reply:
                return int(reply.status), str(reply.read().decode())
        except urllib.error.HTTPError as err:
            return int(err.code), ""
        except OSError:
            return 0, ""

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The scraped /metrics: name → [(labels, value)]; empty when the worker does not answer."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body if status == 200 else ""):
            for s in family.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def tagged(self) -> float:
        """Documents this process has tagged so far (0 while it does not answer)."""
        return sum(v for labels, v in self.samples().get("tagger_messages_total", [])
                   if labels.get("outcome") == "tagged")

    def memory_mib(self, field: str = "VmRSS") -> float:
        """The resident set now (``VmRSS``) or at its peak (``VmHWM``), MiB, summed over the process and its
        descendants (``--processes N`` runs its workers as children; a sum of peaks is an upper bound)."""
        total, pids = 0.0, [self.process.pid]
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except FileNotFoundError:  # exited meanwhile
                continue
            line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
            total += int(line.split()[1]) / 1024
        return total

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the exit status."""
        self.process.terminate()
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, if it is still running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
