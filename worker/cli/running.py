"""Running a long-lived loop (``serve``, ``learn``) until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import signal
from typing import Protocol

__all__ = ["Stoppable", "run_until_signalled"]


class Stoppable(Protocol):
    """A long-running loop: ``run`` until ``stop`` is called (from a signal handler)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def run_until_signalled(loop: Stoppable) -> None:
    """Run ``loop`` with SIGTERM and SIGINT asking it to stop (finish its step, then return)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    loop.run()
