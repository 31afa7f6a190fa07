"""The ``tagger`` command: argument parsing, logging set-up, and one-line errors.

Model commands live in :mod:`worker.model_commands`; they import torch lazily so ``tagger --help``
stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from model.errors import TaggerError
from worker import bench_commands, demo, feedback_commands, model_commands, serve_commands

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The full ``tagger`` argument parser."""
    parser = argparse.ArgumentParser(prog="tagger", description="Rank-AE multi-label tagging.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_commands.register(commands)
    serve_commands.register(commands)
    feedback_commands.register(commands)
    demo.register(commands)
    bench_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tagger`` command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except TaggerError as err:
        print(f"tagger: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
