"""``tagger api``: the HTTP API and the review page, a process of its own beside the workers."""

from __future__ import annotations

import argparse
import os

from worker.settings import ApiSettings, CorrectionSettings, ModelSettings, RedisSettings, add_flags, load

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``tagger api`` to the ``tagger`` parser."""
    api = commands.add_parser("api", help="serve the HTTP API (lookup, suggest, corrections) and the review page")
    add_flags(api, ApiSettings, RedisSettings, ModelSettings, CorrectionSettings)
    api.set_defaults(handler=cmd_api)


def cmd_api(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    from worker.api.server import serve  # here: FastAPI and torch load only for this command

    settings = load(os.environ, vars(args))
    settings.ops.apply_torch_threads()
    serve(settings)
    return 0
