"""Smoke test: `tagger bench paper --quick` end to end on a Reuters subset, in a copy of the checkout.

The run uses the default output folder, so it also shows that a smoke run leaves docs/ as committed
(the other benchmarks' choice of folder is unit-tested in tests/unit/test_bench_output.py). About two
minutes on the 2-core CI machine; skipped when the shared datasets or the [bench] extra are absent.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from worker.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("meta", "table", "noise", "ablation", "convergence", "explain")


def _skip_unless_ready() -> None:
    if not (SHARED_DATA / "reuters21578").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    missing = [m for m in ("matplotlib", "sklearn", "napkinxc") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs the [bench] extra (missing {missing}): pip install -e '.[bench]'")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree (tracked and untracked files git does not ignore), committed as a new repository,
    with the shared datasets beside it where the benchmarks look for them."""
    _skip_unless_ready()
    copy = tmp_path_factory.mktemp("checkout") / "repo"
    for name in _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        if name and (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    (copy.parent / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    _git(copy, "init", "-q")
    _git(copy, "add", "-A")
    _git(copy, "commit", "-q", "-m", "copy of the working tree")
    return copy


@pytest.fixture(scope="module")
def quick_run(checkout: Path) -> Path:
    """The run folder of `tagger bench paper --quick` with its default output, run in the copy."""
    done = subprocess.run([sys.executable, "-m", "worker.cli", "bench", "paper", "--quick"], cwd=checkout,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("results in "))
    assert folder.parent == checkout / "runs" / "bench" and folder.name.startswith("paper-")
    return folder


def test_smoke_run_leaves_docs_unchanged(checkout: Path, quick_run: Path) -> None:
    assert _git(checkout, "status", "--porcelain", "--", "docs") == ""


def test_smoke_run_refuses_to_publish(capfd: pytest.CaptureFixture[str]) -> None:
    _skip_unless_ready()
    assert main(["bench", "paper", "--quick", "--publish"]) == 2  # the benchmark runs as a child process
    assert "--quick" in capfd.readouterr().err


def _section(text: str, name: str) -> str:
    match = re.search(rf"<!-- paper:{name} -->\n(.*?)\n<!-- /paper:{name} -->", text, re.DOTALL)
    assert match, f"section {name} missing"
    return match.group(1)


def test_every_section_and_figure_is_written(quick_run: Path) -> None:
    text = (quick_run / "results.md").read_text(encoding="utf-8")
    for name in SECTIONS:
        assert "not run yet" not in _section(text, name)
    for figure in ("methods", "noise", "ablation", "convergence"):
        assert (quick_run / f"figures/paper_{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<span class='w'" in (quick_run / "figures/paper_explain.html").read_text(encoding="utf-8")
    assert "wall time" in _section(text, "meta")


def test_method_table_numbers_are_sane(quick_run: Path) -> None:
    table = _section((quick_run / "results.md").read_text(encoding="utf-8"), "table")
    header = next(line for line in table.splitlines() if line.startswith("| dataset | metric |"))
    methods = [cell.strip() for cell in header.split("|")[3:-1]]
    assert methods[:4] == ["Rank-AE", "BCE-AE", "No-attn Rank-AE", "PMI-cosine"] and "ovr-logistic" in methods
    rows = {}
    for line in table.splitlines():
        cells = [c.strip().strip("*") for c in line.split("|")[1:-1]]
        if cells and cells[0] == "reuters" and len(cells) == len(methods) + 2:
            rows[cells[1]] = dict(zip(methods, map(float, cells[2:]), strict=True))
    for method in methods:
        assert 0 <= rows["P@5"][method] <= rows["P@3"][method] <= rows["P@1"][method] <= 100
        assert rows["nDCG@1"][method] == rows["P@1"][method]
    assert rows["P@1"]["ovr-logistic"] > 70  # a linear model on 1,500 Reuters documents
    assert max(rows["P@1"][m] for m in methods[:4]) > 25  # above ranking labels at random (74 labels)
    ranks = [float(c) for c in re.findall(r"\| \*\*rank score\*\* \| P@k \| (.*) \|", table)[0].split(" | ")]
    assert len(ranks) == len(methods) and all(1 <= r <= len(methods) for r in ranks)


def test_noise_section_states_the_target(quick_run: Path) -> None:
    noise = _section((quick_run / "results.md").read_text(encoding="utf-8"), "noise")
    assert len(re.findall(r"at 40% missing\): \*\*(met|not met)\*\*", noise)) == 2  # paper setting, default
    assert "| ovr-logistic |" in noise and "| default, BCE decoder |" in noise
    assert re.search(r"- default lost less P@1 than every peer \(ovr-logistic\) under missing labels at [01] of 1",
                     noise)
