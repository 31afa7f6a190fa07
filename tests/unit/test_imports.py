"""Import boundaries: prediction does not pull in the training loop; checkpoint metadata needs no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "absent"), [
    ("model.tagger", "model.trainer"),
    ("model.checkpoint", "torch"),
    ("worker.learn.registry", "torch"),
])
def test_module_does_not_import(module: str, absent: str) -> None:
    code = f"import sys, {module}; assert {absent!r} not in sys.modules, 'imported {absent}'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
