"""``tagger bench paper``: the seed paper's experiments (benchmarks/paper.py), from the CLI.

The benchmarks are not part of the installed package (``packages.find`` ships ``model`` and
``worker`` only): they need the shared datasets and the ``[bench]`` extra, which only a source
checkout has. So the command imports ``benchmarks.paper`` lazily from the checkout beside this
package (an editable install) and otherwise says what to do.

Where a benchmark writes is decided here too, for every benchmark alike (``output_folder``): a new run
folder ``runs/bench/NAME-TIMESTAMP/`` unless ``--out DIR`` says otherwise; ``docs/``, whose results the
README links to, only with ``--publish`` (or ``--out docs``), and never from a ``--quick`` smoke run.
A run folder has docs/'s layout (``results.md``, ``figures/``), so publishing only changes the folder.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from model.errors import ConfigError

__all__ = ["DOCS", "RUNS", "SECTIONS", "add_output_arguments", "add_paper_arguments", "output_folder", "register"]

SECTIONS = ("table", "noise", "ablation", "convergence", "explain")
ROOT = Path(__file__).resolve().parents[1]  # the source checkout (the benchmarks are not installed)
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


def add_paper_arguments(parser: argparse.ArgumentParser) -> None:
    """The paper benchmark's flags (shared by ``tagger bench paper`` and ``python -m benchmarks.paper``)."""
    parser.add_argument("--quick", action="store_true",
                        help="small subsets and few epochs: a smoke run of a couple of minutes, not a measurement")
    add_output_arguments(parser)  # results.md sections and figures/paper_*
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
    if not (ROOT / "benchmarks" / "paper.py").is_file():
        raise ConfigError("tagger bench runs the benchmarks of a source checkout, and none is beside this "
                          f"installation ({ROOT}); clone the repository and pip install -e '.[bench]' there")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("benchmarks.paper")
    except ModuleNotFoundError as err:
        raise ConfigError(f"the paper benchmark needs {err.name!r}: pip install -e '.[bench]'") from err


def cmd_paper(args: argparse.Namespace) -> int:
    """Run the paper benchmark with the parsed flags; print the folder it wrote."""
    print(f"results in {_paper_module().run(args)}")
    return 0
