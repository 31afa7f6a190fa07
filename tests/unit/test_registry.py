"""The model registry: publish, atomic CURRENT, rollback to the previous live version, pruning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.boost import LabelBoost
from model.errors import CheckpointError
from worker.learn.registry import Registry, resolve


def fake_checkpoint(root: Path, version: str, p1: float = 0.5) -> Path:
    """The files checkpoint.read_meta reads for the registry (it copies whole directories; vocabulary and
    weights are never opened)."""
    path = root / f"ckpt-{version}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"version": version, "created": f"2026-01-0{version[-1]}"}))
    (path / "labels.json").write_text(json.dumps(["a", "b"]))
    (path / "metrics.json").write_text(json.dumps({"valid": {"p@1": p1}}))
    return path


def test_the_listing_shows_a_versions_new_label_boost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    registry = Registry(tmp_path / "reg")
    registry.publish(fake_checkpoint(tmp_path, "v1"))
    grown = fake_checkpoint(tmp_path, "v2")
    config = json.loads((grown / "config.json").read_text())
    (grown / "config.json").write_text(json.dumps({**config, "boost": {"labels": ["b"], "weight": 0.03}}))
    registry.publish(grown)
    assert [i.boost for i in registry.versions()] == [LabelBoost(), LabelBoost(("b",), 0.03)]
    assert main(["model", "list", "--registry", str(tmp_path / "reg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("labels=2") and lines[1].endswith("labels=2  new-label boost 0.03 on 1")


def test_publish_makes_current_and_lists(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    registry.publish(fake_checkpoint(tmp_path, "v1"))
    registry.publish(fake_checkpoint(tmp_path, "v2", 0.6))
    assert registry.current() == "v2"
    assert [(i.version, i.current, i.valid_p1) for i in registry.versions()] == [("v1", False, 0.5),
                                                                                 ("v2", True, 0.6)]
    assert resolve(tmp_path / "reg") == tmp_path / "reg" / "versions" / "v2"
    assert resolve(tmp_path / "ckpt-v1") == tmp_path / "ckpt-v1"  # a plain checkpoint is served as is


def test_rollback_defaults_to_the_previous_live_version(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    for version in ("v1", "v2", "v3"):
        registry.publish(fake_checkpoint(tmp_path, version))
    assert registry.rollback() == "v2"
    assert registry.current() == "v2"
    assert registry.rollback("v3") == "v3"
    actions = [entry["action"] for entry in registry.history()]
    assert actions.count("rollback") == 2 and actions.count("publish") == 3


def test_rollback_without_history_or_to_an_unknown_version_is_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    registry.publish(fake_checkpoint(tmp_path, "v1"))
    with pytest.raises(CheckpointError, match="no earlier live version"):
        registry.rollback()
    with pytest.raises(CheckpointError, match="no version 'v9'"):
        registry.rollback("v9")


def test_prune_keeps_the_newest_and_never_the_current(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    for version in ("v1", "v2", "v3", "v4"):
        registry.publish(fake_checkpoint(tmp_path, version))
    registry.rollback("v1")
    assert registry.prune(keep=2) == ["v2", "v3"]
    assert [i.version for i in registry.versions()] == ["v1", "v4"]


def test_current_is_replaced_atomically(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    registry.publish(fake_checkpoint(tmp_path, "v1"))
    registry.publish(fake_checkpoint(tmp_path, "v2"))
    leftovers = [p.name for p in (tmp_path / "reg").iterdir() if p.name.startswith(".")]
    assert leftovers == [] and (tmp_path / "reg" / "CURRENT").read_text() == "v2\n"


def test_not_a_registry_says_how_to_make_one(tmp_path: Path) -> None:
    for action in (Registry(tmp_path).current, Registry(tmp_path / "missing").versions):
        with pytest.raises(CheckpointError, match="tagger model publish"):
            action()


def test_publishing_something_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"not a model checkpoint: missing config\.json"):
        registry.publish(tmp_path / "empty")
    damaged = fake_checkpoint(tmp_path, "v1")
    (damaged / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"config\.json: damaged checkpoint file"):
        registry.publish(damaged)
    assert not (tmp_path / "reg" / "versions").exists()
