"""Deployment checks: shared paths and helpers, plus the integration fixtures (broker, Redis, model, worker)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from tests.integration.conftest import *  # noqa: F403  (tansu, redis_service, model_dir, stream, start_worker)
from worker.api.metrics import ApiMetrics
from worker.metrics import LearnerMetrics, WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = ROOT / "docker"


def tool(name: str, install: str) -> str:
    """The path of a command-line tool (the venv's bin first), or skip the test saying how to install it."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not found; install it with: {install}")
    return found


def run_tool(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a checker; the test fails with its output when it exits non-zero."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class _NoRedis:
    """Stands in for the learner's Redis client: no rejected corrections counted yet."""

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        """An empty hash."""
        return {}


def exported_series() -> set[str]:
    """Every series name the worker's, the learner's and the API's /metrics expose (_bucket, _sum, _total ...)."""
    text = (generate_latest(WorkerMetrics().registry) + generate_latest(LearnerMetrics(_NoRedis()).registry)
            + generate_latest(ApiMetrics().registry)).decode()
    # A labelled family with nothing observed yet has no samples: its series names follow from its type.
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
    types = [line.split(" ")[2:4] for line in text.splitlines() if line.startswith("# TYPE")]
    typed = {name + suffix for name, kind in types for suffix in suffixes.get(kind, ("",))}
    return {name for name, _ in types} | typed | {
        re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def metric_names(promql: str) -> set[str]:
    """The tagger_* metric names a PromQL expression reads."""
    return set(re.findall(r"\btagger_[a-z0-9_]+", promql))
