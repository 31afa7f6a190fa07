"""Where a benchmark writes: a run folder by default, docs/ only when asked, never from a --quick run."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from benchmarks import output
from benchmarks.output import add_output_arguments, output_folder
from model.errors import ConfigError
from worker.cli import bench, build_parser


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout in tmp_path: docs/ and runs/bench/ point there."""
    monkeypatch.setattr(output, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(output, "RUNS", tmp_path / "runs" / "bench")
    return tmp_path


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_output_arguments(parser)
    return parser.parse_args(argv)


def test_default_is_a_new_run_folder(checkout: Path) -> None:
    args = _parse([])
    folder = output_folder("paper", args.out, args.publish, quick=True)
    assert folder.is_dir() and folder.parent == checkout / "runs" / "bench" and folder.name.startswith("paper-")


def test_publish_writes_docs(checkout: Path) -> None:
    args = _parse(["--publish"])
    assert output_folder("paper", args.out, args.publish) == checkout / "docs"


def test_out_is_taken_as_given(checkout: Path) -> None:
    args = _parse(["--out", str(checkout / "elsewhere")])
    assert output_folder("paper", args.out, args.publish, quick=True) == checkout / "elsewhere"


@pytest.mark.parametrize("argv", [["--publish"], ["--out", "docs"], ["--out", "docs/figures"]])
def test_quick_run_refuses_to_write_docs(checkout: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    monkeypatch.chdir(checkout)
    args = _parse(argv)
    with pytest.raises(ConfigError, match="--quick"):
        output_folder("paper", args.out, args.publish, quick=True)
    assert not (checkout / "docs").exists()


def test_out_and_publish_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        _parse(["--publish", "--out", "x"])


@pytest.mark.parametrize("name", ["feedback", "faults", "soak"])
def test_benchmark_defaults_to_a_run_folder(name: str) -> None:
    """The benchmarks that need a broker or Redis: their flags choose no folder, so a run folder."""
    args = importlib.import_module(f"benchmarks.{name}").build_parser().parse_args([])
    assert args.out is None and not args.publish


def test_paper_defaults_to_a_run_folder() -> None:
    from benchmarks.paper import add_paper_arguments

    parser = argparse.ArgumentParser()
    add_paper_arguments(parser)
    args = parser.parse_args(["--quick"])
    assert args.out is None and not args.publish


def test_tagger_bench_runs_the_checkouts_module_with_its_flags() -> None:
    """``tagger bench NAME ARGS`` is ``python -m benchmarks.NAME ARGS``: the flags pass through untouched."""
    args = build_parser().parse_args(["bench", "paper", "--quick", "--out", "x"])
    assert bench.benchmark_command(args.name, args.args)[1:] == ["-m", "benchmarks.paper", "--quick", "--out", "x"]


def test_tagger_bench_names_the_benchmarks_when_one_is_unknown() -> None:
    with pytest.raises(ConfigError, match=r"no benchmark 'papers'; the checkout has: .*paper.*quality"):
        bench.benchmark_command("papers", [])
