"""A directory of model versions with an atomically switched ``CURRENT`` pointer.

Layout::

    ROOT/CURRENT                 the live version's name (replaced atomically: write, fsync, rename)
    ROOT/versions/<version>/     one checkpoint directory per version (see model.checkpoint)
    ROOT/history.jsonl           one line per publish, promotion, rejection and rollback

``TAGGER_MODEL_DIR`` may name either a registry root (the worker follows ``CURRENT`` and hot-swaps
when it changes) or a plain checkpoint directory (served as is).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.boost import LabelBoost
from model.checkpoint import read_meta
from model.errors import CheckpointError, ConfigError

__all__ = ["Registry", "VersionInfo", "resolve"]


@dataclass(frozen=True)
class VersionInfo:
    """One stored version, as listed by ``tagger model list``."""

    version: str
    created: str
    valid_p1: float | None
    current: bool
    labels: int = 0  # labels the version knows (grows as corrections admit new ones)
    boost: LabelBoost = field(default_factory=LabelBoost)  # new labels' served boost, chosen by the learner


class Registry:
    """Model versions under ``root``; safe for one writer and any number of readers."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    @staticmethod
    def is_registry(path: Path | str) -> bool:
        """Whether ``path`` is a registry root (it has a CURRENT pointer)."""
        return (Path(path) / "CURRENT").is_file()

    def current(self) -> str:
        """The live version's name."""
        try:
            return (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CheckpointError(f"{self.root}: not a model registry (no CURRENT file); publish a model "
                                  f"with: tagger model publish CHECKPOINT --registry {self.root}") from err

    def path(self, version: str) -> Path:
        """The checkpoint directory of ``version``."""
        path = self.versions_dir / version
        if not path.is_dir():
            raise CheckpointError(f"{self.root}: no version {version!r}; see tagger model list")
        return path

    def publish(self, checkpoint_dir: Path, make_current: bool = True, note: dict[str, Any] | None = None) -> str:
        """Copy a checkpoint in as a new version (atomically) and, by default, make it current."""
        version = read_meta(checkpoint_dir).version
        target = self.versions_dir / version
        if not target.exists():
            staging = self.versions_dir / f".incoming-{uuid.uuid4().hex[:8]}"
            shutil.copytree(checkpoint_dir, staging)
            staging.rename(target)
        self.record("publish", version, **(note or {}))
        if make_current:
            self.set_current(version, "promote")
        return version

    def publish_checked(self, checkpoint_dir: Path, force: bool = False) -> str:
        """``tagger model publish``: load the checkpoint in full (a damaged one never goes live), refuse one
        whose label set or featurizer differs from the live version's unless ``force`` (workers following
        the registry would switch to it), then publish it as the live version."""
        from model.checkpoint import interface_changes, load  # here: loads torch, which listing does not need

        new = load(checkpoint_dir)
        if self.is_registry(self.root) and not force:
            live = self.current()
            changes = interface_changes(load(self.path(live)), new)
            if changes:
                raise ConfigError(f"{checkpoint_dir} differs from the live version {live}: {'; '.join(changes)}. "
                                  "Workers serving this registry would switch to it; pass --force to publish it "
                                  "anyway")
        return self.publish(checkpoint_dir, note={"source": str(checkpoint_dir)})

    def set_current(self, version: str, action: str, **details: Any) -> None:
        """Point CURRENT at ``version`` (atomic rename) and record why."""
        self.path(version)
        previous = self.current() if self.is_registry(self.root) else None
        staging = self.root / f".CURRENT.{uuid.uuid4().hex[:8]}"
        with staging.open("w", encoding="utf-8") as handle:
            handle.write(version + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, self.root / "CURRENT")
        self.record(action, version, previous=previous, **details)

    def rollback(self, version: str | None = None) -> str:
        """Make ``version`` (default: the version live before the current one) current again."""
        target = version or self._previous_live()
        self.set_current(target, "rollback")
        return target

    def _previous_live(self) -> str:
        current = self.current()
        for entry in reversed(self.history()):
            if entry["action"] in ("promote", "rollback") and entry["version"] == current and entry.get("previous"):
                return str(entry["previous"])
        raise CheckpointError(f"{self.root}: no earlier live version to roll back to; name one (tagger model list)")

    def record(self, action: str, version: str, **details: Any) -> None:
        """Append one line to history.jsonl."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = {"ts": time.time(), "action": action, "version": version, **details}
        with (self.root / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")

    def history(self) -> list[dict[str, Any]]:
        """Every recorded event, oldest first."""
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def versions(self) -> list[VersionInfo]:
        """Stored versions, oldest first."""
        current = self.current()
        found = []
        for path in sorted(self.versions_dir.glob("[!.]*")):
            meta = read_meta(path)
            found.append(VersionInfo(path.name, meta.created, meta.valid_p1, path.name == current, len(meta.labels),
                                     meta.boost))
        return sorted(found, key=lambda info: info.created)

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep``, never the current one; returns what was removed."""
        current = self.current()
        removable = [info.version for info in self.versions() if info.version != current]
        doomed = removable[: max(0, len(removable) - max(keep - 1, 0))]
        for version in doomed:
            shutil.rmtree(self.versions_dir / version, ignore_errors=True)
        return doomed


def resolve(model_dir: Path | str) -> Path:
    """The checkpoint to serve: the registry's current version, or ``model_dir`` itself."""
    if Registry.is_registry(model_dir):
        registry = Registry(model_dir)
        return registry.path(registry.current())
    return Path(model_dir)
