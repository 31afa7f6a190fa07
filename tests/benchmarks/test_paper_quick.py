"""Smoke test: `tagger bench paper --quick` end to end on a Reuters subset, into a temporary directory.

About a minute on the 2-core CI machine; skipped when the shared datasets or the [bench] extra are absent.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("meta", "table", "noise", "ablation", "convergence", "explain")


def _skip_reason() -> str | None:
    if not (SHARED_DATA / "reuters21578").is_dir():
        return f"shared datasets not found at {SHARED_DATA}"
    missing = [m for m in ("matplotlib", "sklearn", "napkinxc") if importlib.util.find_spec(m) is None]
    return f"needs the [bench] extra (missing {missing}): pip install -e '.[bench]'" if missing else None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("paper")
    done = subprocess.run([sys.executable, "-m", "worker.cli", "bench", "paper", "--quick", "--out", str(out),
                           "--workdir", str(out / "work")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


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
    assert re.search(r"at 40% missing\): \*\*(met|not met)\*\*", noise)
    assert "| ovr-logistic |" in noise
