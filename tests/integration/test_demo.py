"""`tagger demo` end to end: Ctrl-C from a terminal stops everything quickly, quietly and completely.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group; the test starts the demo in a
process group of its own and signals that group, as the terminal would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir() if tasks.exists() else []:
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.usefixtures("tansu", "redis_service")  # skip, saying why, where either cannot start
def test_ctrl_c_stops_the_demo_within_seconds_with_a_summary_and_nothing_left(model_dir: Path,
                                                                             tmp_path: Path) -> None:
    log_path = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    with log_path.open("w") as log:
        demo = subprocess.Popen([sys.executable, "-m", "worker.cli", "demo", "--model", str(model_dir),
                                 "--workdir", str(tmp_path / "demo"), "--rate", "200", "--seconds", "60"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "tagged" in log_path.read_text(), 90, "the demo's first progress line")
        services = _children(demo.pid)
        assert services, "the demo started no broker or Redis"
        started = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert demo.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert "Traceback" not in output and "INFO kafka" not in output, output[-2000:]
    assert "\ninterrupted: produced " in output, output[-1000:]
    assert not [pid for pid in services if _alive(pid)], "a service outlived the demo"
    assert not list((tmp_path / "demo").glob("services-*")), "the services' folder was left behind"
