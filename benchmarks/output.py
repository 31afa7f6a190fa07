"""Where a benchmark writes, decided once for every benchmark (``output_folder``).

A new run folder ``runs/bench/NAME-TIMESTAMP/`` unless ``--out DIR`` says otherwise; ``docs/``, whose results
the README links to, only with ``--publish`` (or ``--out docs``), and never from a ``--quick`` smoke run.
A run folder has docs/'s layout (``results.md``, ``figures/``), so publishing only changes the folder.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path

from model.errors import ConfigError

__all__ = ["DOCS", "RUNS", "add_output_arguments", "begin", "output_folder"]

ROOT = Path(__file__).resolve().parents[1]  # the source checkout
DOCS = ROOT / "docs"  # the committed results
RUNS = ROOT / "runs" / "bench"  # git-ignored


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out DIR`` / ``--publish``: where a benchmark writes (see ``output_folder``)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, metavar="DIR",
                       help="write the results into DIR, laid out like docs/ (default: a new run folder "
                            "runs/bench/NAME-TIMESTAMP/)")
    where.add_argument("--publish", action="store_true",
                       help="write into docs/, replacing the committed results the README links to "
                            "(refused with --quick)")


def output_folder(name: str, out: Path | None, publish: bool, quick: bool = False) -> Path:
    """The folder benchmark ``name`` writes to, created: OUT, docs/ with ``publish``, else a new run folder.

    Raises ConfigError for a quick (smoke) run that would write docs/.
    """
    folder = DOCS if publish else out or RUNS / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if quick and _within(folder, DOCS):
        raise ConfigError(f"a --quick run is a smoke test, not a measurement, and does not write {DOCS}: "
                          "drop --publish (or --out docs), or run without --quick")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def begin(name: str, parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Path]:
    """Start benchmark ``name``: parse its flags, choose its output folder, log to stderr (kafka-python's
    connection chatter kept to errors)."""
    args = parser.parse_args()
    folder = output_folder(name, args.out, args.publish, getattr(args, "quick", False))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    return args, folder
