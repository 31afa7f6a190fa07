"""The wheel ships the service and nothing else: no tests, no benchmarks, no fault-injection rig."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

SHIPPED = ("model/", "worker/", "rankae_tagger-")  # the two packages and the wheel's .dist-info
RIG = {"chaos.py", "scenarios.py", "proxy.py", "process.py", "conftest.py"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from this checkout (without build isolation: nothing is downloaded)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("rankae_tagger-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_holds_only_the_packages(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert not [n for n in names if not n.startswith(SHIPPED)], "unexpected files in the wheel"
    assert not [n for n in names if Path(n).name in RIG or n.startswith(("tests/", "benchmarks/"))]
    assert "worker/stream/loop.py" in names and "model/checkpoint.py" in names


def test_nothing_shipped_imports_the_benchmarks_or_the_tests(wheel: zipfile.ZipFile) -> None:
    importing = re.compile(r"^\s*(from|import)\s+(benchmarks|tests)\b", re.MULTILINE)
    offenders = [n for n in wheel.namelist() if n.endswith(".py") and importing.search(wheel.read(n).decode())]
    assert offenders == []
