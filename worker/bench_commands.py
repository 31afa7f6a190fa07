"""``tagger bench paper``: the seed paper's experiments (benchmarks/paper.py), from the CLI.

The benchmarks are not part of the installed package (``packages.find`` ships ``model`` and
``worker`` only): they need the shared datasets and the ``[bench]`` extra, which only a source
checkout has. So the command imports ``benchmarks.paper`` lazily from the checkout beside this
package (an editable install) and otherwise says what to do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from model.errors import ConfigError

__all__ = ["SECTIONS", "add_paper_arguments", "register"]

SECTIONS = ("table", "noise", "ablation", "convergence", "explain")


def add_paper_arguments(parser: argparse.ArgumentParser) -> None:
    """The paper benchmark's flags (shared by ``tagger bench paper`` and ``python -m benchmarks.paper``)."""
    parser.add_argument("--quick", action="store_true",
                        help="small subsets and few epochs: a smoke run of a couple of minutes, not a measurement")
    parser.add_argument("--out", type=Path, default=Path("docs"),
                        help="writes OUT/results.md sections and OUT/figures/paper_* (default: docs)")
    parser.add_argument("--datasets", nargs="+", metavar="NAME",
                        help="datasets to run (default: every shared set; --quick: reuters)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="sections to run and write (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/paper"), help="scratch files of the peers")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``tagger bench paper`` to the ``tagger`` parser."""
    bench = commands.add_parser("bench", help="run a benchmark of the source checkout")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    paper = benchmarks.add_parser("paper", help="the Rank-AE paper's experiments: tables, figures, results.md")
    add_paper_arguments(paper)
    paper.set_defaults(handler=cmd_paper)


def _paper_module() -> ModuleType:
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "paper.py").is_file():
        raise ConfigError("tagger bench runs the benchmarks of a source checkout, and none is beside this "
                          f"installation ({root}); clone the repository and pip install -e '.[bench]' there")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module("benchmarks.paper")
    except ModuleNotFoundError as err:
        raise ConfigError(f"the paper benchmark needs {err.name!r}: pip install -e '.[bench]'") from err


def cmd_paper(args: argparse.Namespace) -> int:
    """Run the paper benchmark with the parsed flags."""
    return int(_paper_module().run(args) or 0)
