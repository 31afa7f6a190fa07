"""``tagger bench NAME [ARGS]``: run a benchmark of the source checkout, ``python -m benchmarks.NAME ARGS``.

The benchmarks are not part of the installed package (``packages.find`` ships ``model`` and ``worker``
only): they need the shared datasets and the ``[bench]`` extra, which only a source checkout has. So the
command runs the benchmark as its own process in the checkout beside this package (an editable install),
never importing it, and otherwise says what to do. Where each benchmark writes is decided by
``benchmarks/output.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from model.errors import ConfigError

__all__ = ["register"]

ROOT = Path(__file__).resolve().parents[2]  # the source checkout (the benchmarks are not installed)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``tagger bench`` to the ``tagger`` parser."""
    bench = commands.add_parser("bench", help="run a benchmark of the source checkout (python -m benchmarks.NAME)",
                                description="Run python -m benchmarks.NAME ARGS in the source checkout; "
                                            "`tagger bench NAME --help` lists that benchmark's flags.")
    bench.add_argument("name", metavar="NAME", help="paper, quality, stream, feedback, faults, soak, ... "
                                                    "(a module in the checkout's benchmarks/)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own flags")
    bench.set_defaults(handler=cmd_bench)


def benchmark_command(name: str, args: list[str]) -> list[str]:
    """The command line that runs benchmark ``name``; ConfigError when the checkout has no such benchmark."""
    if not (ROOT / "benchmarks").is_dir():
        raise ConfigError("tagger bench runs the benchmarks of a source checkout, and none is beside this "
                          f"installation ({ROOT}); clone the repository and pip install -e '.[bench]' there")
    if not name.isidentifier() or not (ROOT / "benchmarks" / f"{name}.py").is_file():
        known = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
        raise ConfigError(f"no benchmark {name!r}; the checkout has: {', '.join(known)}")
    return [sys.executable, "-m", f"benchmarks.{name}", *args]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from the checkout (in the caller's folder, so relative paths mean what they say);
    its exit status is the command's."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = benchmark_command(args.name, args.args)
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": path}, check=False).returncode
