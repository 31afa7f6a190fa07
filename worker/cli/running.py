"""Running a long-lived loop (``serve``, ``learn``) until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import logging
import signal
import sys
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the epoch loop imports torch; ``tagger --help`` does not
    from model.epochs import Progress

__all__ = ["Stoppable", "configure_logging", "epoch_progress", "run_until_signalled"]


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


def epoch_progress(quiet: bool = False) -> Progress:
    """How a training run started from the command line shows its epochs: a bar on a terminal, else one log
    line each (a bar's carriage returns make one endless line of a job's or container's log); none if
    ``quiet``."""
    if quiet:
        return "off"
    return "bar" if sys.stderr.isatty() else "log"


def run_until_signalled(loop: Stoppable) -> None:
    """Run ``loop`` with SIGTERM and SIGINT asking it to stop (finish its step, then return)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    loop.run()
