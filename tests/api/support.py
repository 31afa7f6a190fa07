"""Helpers of the API tests: documents written through the worker's real tag writer, and ``tagger api`` in
a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from worker.services import die_with_parent, free_port
from worker.store.writer import TagRecord, TagWriter

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-5f2c"


def auth(token: str = TOKEN) -> dict[str, str]:
    """The write header."""
    return {"Authorization": f"Bearer {token}"}


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``condition`` until it is truthy; raise AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)  # polling a condition under a deadline, not synchronising on time
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_documents(client: redis.Redis, records: list[TagRecord], model: str = "v-test") -> None:
    """Store ``records`` as the worker does (tags, texts and the recently tagged list), with the real TagWriter."""
    TagWriter(client).write(records, model)


def record(doc_id: str, tags: list[tuple[str, float]], text: str = "some text", offset: int = 0,
           ts: int = 1_700_000_000_000) -> TagRecord:
    """A tagged document from partition 0 of topic ``docs``."""
    return TagRecord(doc_id, tags, text, "docs", 0, offset, ts)


class ApiProcess:
    """``tagger api`` in a child process on a free loopback port, configured by TAGGER_* settings."""

    def __init__(self, settings: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, **settings, "TAGGER_API_HOST": "127.0.0.1", "TAGGER_API_PORT": str(self.port)}
        with log_path.open("ab") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "worker.cli", "api"], cwd=ROOT, env=env,
                                            stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def status(self, path: str) -> int:
        """The HTTP status of a GET (0 when nothing answers)."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=2) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /readyz answers 200; fails with the log's tail if the process exits first."""
        wait_for(lambda: self.process.poll() is not None or self.status("/readyz") == 200, timeout,
                 f"tagger api ready (log {self.log_path})")
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, wait; returns the exit status (kills it after ``timeout``)."""
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
