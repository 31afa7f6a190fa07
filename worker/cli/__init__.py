"""The ``tagger`` command: argument parsing, logging set-up, and one-line errors.

Model commands live in :mod:`worker.cli.model`; they import torch lazily so ``tagger --help``
stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import kafka.errors
import redis

from model.errors import TaggerError
from worker.cli import api, bench, demo, feedback, model, predict, serve
from worker.cli.running import configure_logging

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The full ``tagger`` argument parser."""
    parser = argparse.ArgumentParser(prog="tagger", description="Rank-AE multi-label tagging.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model.register(commands)
    predict.register(commands)
    serve.register(commands)
    feedback.register(commands)
    demo.register(commands)
    bench.register(commands)
    api.register(commands)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag is reported by the command it was given to, with that command's
    usage (argparse would report it at the top level, with the list of commands)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tagger`` command; returns the process exit status."""
    args = parse(build_parser(), argv)
    configure_logging(args.verbose)
    try:
        return int(args.handler(args) or 0)
    except TaggerError as err:
        print(f"tagger: error: {err}", file=sys.stderr)
        return 2
    except kafka.errors.NoBrokersAvailable:
        print("tagger: error: cannot reach a Kafka broker at "
              f"{os.environ.get('TAGGER_KAFKA_BOOTSTRAP_SERVERS', 'the configured address')}; check "
              "TAGGER_KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) and that the broker is running",
              file=sys.stderr)
        return 2
    except redis.ConnectionError as err:  # Redis went away after the command had reached it
        print(f"tagger: error: lost the connection to Redis ({err}); check that it is running and reachable",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return 130

