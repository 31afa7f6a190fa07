"""``tagger serve`` (the streaming worker) and ``tagger lookup`` (read tags back)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Protocol

from worker.config import add_settings_flags, settings_from

__all__ = ["Stoppable", "register", "run_until_signalled"]

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the streaming commands to the ``tagger`` parser."""
    serve = commands.add_parser("serve", help="run the streaming worker against Kafka and Redis")
    add_settings_flags(serve)
    serve.set_defaults(handler=cmd_serve)

    lookup = commands.add_parser("lookup", help="print the stored tags of documents, one JSON line each")
    lookup.add_argument("ids", nargs="+", metavar="ID")
    lookup.add_argument("--redis-url", default=None, help="env TAGGER_REDIS_URL (default redis://localhost:6379/0)")
    lookup.set_defaults(handler=cmd_lookup)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the worker until SIGTERM/SIGINT."""
    from worker.runner import Worker

    settings = settings_from(os.environ, vars(args))
    log.info("settings: %s", settings)
    settings.apply_torch_threads()
    run_until_signalled(Worker(settings))
    return 0


class Stoppable(Protocol):
    """A long-running loop: ``run`` until ``stop`` is called (from a signal handler)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def run_until_signalled(loop: Stoppable) -> None:
    """Run ``loop`` with SIGTERM and SIGINT asking it to stop (finish its step, then return)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    loop.run()


def cmd_lookup(args: argparse.Namespace) -> int:
    """One JSON line per id: its tags, model version, source and timestamp (null when unknown)."""
    from worker.client import TagClient
    from worker.store import connect

    settings = settings_from(os.environ, {"redis_url": args.redis_url})
    client = TagClient(connect(settings, wait=False))
    for doc_id, found in client.lookup(args.ids).items():
        body = None if found is None else dataclasses.asdict(found)
        sys.stdout.write(json.dumps({"id": doc_id, "result": body}) + "\n")
    return 0
