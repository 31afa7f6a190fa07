"""Running a long-lived loop (``serve``, ``learn``) until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Protocol

__all__ = ["Stoppable", "configure_logging", "run_until_signalled"]


class Stoppable(Protocol):
    """A long-running loop: ``run`` until ``stop`` is called (from a signal handler)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def configure_logging(verbose: bool, tag: str = "") -> None:
    """Log to stderr at INFO (DEBUG when ``verbose``); ``tag`` (e.g. ``"[process 1] "``) marks the lines of one
    of several processes."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s", stream=sys.stderr)
    if not verbose:  # kafka-python narrates every connection and group join at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)


def run_until_signalled(loop: Stoppable) -> None:
    """Run ``loop`` with SIGTERM and SIGINT asking it to stop (finish its step, then return)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    loop.run()
