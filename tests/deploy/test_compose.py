"""The compose stack: valid against the compose spec, its worker settings are real settings, its mounted
files exist, and it never runs more workers than the input topic has partitions."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.conftest import DOCKER, load_yaml, run_tool, tool
from worker.settings import ENV_PREFIX, field_names

COMPOSE = DOCKER / "compose.yaml"
SETTINGS = {ENV_PREFIX + name.upper() for name in field_names()}


def _services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return services


def test_compose_spec() -> None:
    run_tool([tool("check-jsonschema", "pip install check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
              str(COMPOSE)])


def test_worker_environment_names_real_settings() -> None:
    environment = _services()["worker"]["environment"]
    unknown = {name for name in environment if name.startswith(ENV_PREFIX)} - SETTINGS
    assert not unknown, f"compose sets TAGGER_* variables the worker does not read: {sorted(unknown)}"
    assert environment["TAGGER_MODEL_DIR"] == "/models/current"


def test_replicas_fit_the_input_topic_partitions() -> None:
    services = _services()
    topic = services["worker"]["environment"]["TAGGER_INPUT_TOPIC"]
    create = " ".join(services["kafka-init"]["command"])
    found = re.search(rf"--topic {re.escape(topic)} --partitions (\d+)", create)
    assert found, f"kafka-init does not create {topic!r} with a partition count"
    assert 2 <= services["worker"]["deploy"]["replicas"] <= int(found.group(1))


def test_mounted_files_exist() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).resolve().exists(), f"{name}: {source} does not exist"
