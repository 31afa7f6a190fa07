"""What the API reports about models and learning: registry versions, recent rounds, the corrections queue.

Everything here is read from what the other processes already publish: the registry's versions and its
``history.jsonl`` (the learner records every rejected or failed round there, with the guard's scores, and
every promotion and rollback), and the corrections stream's consumer group in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.checkpoint import read_meta
from model.tagger import Tagger
from worker.api.state import RedisClient
from worker.learn.registry import Registry, VersionInfo
from worker.store.keys import CORRECTIONS, EXAMPLES, LEARNERS, REJECTED

__all__ = ["LearnerStatus", "QueueStatus", "learner_status", "queue_status", "rejected_in_a_row", "rounds", "versions"]

ROUND_ACTIONS = ("promote", "rejected", "failed", "rollback")  # history entries that change or judge the live model


def versions(model_dir: str, served: Tagger) -> list[VersionInfo]:
    """Stored versions, oldest first (a plain checkpoint directory is one version, the live one)."""
    if Registry.is_registry(model_dir):
        return Registry(model_dir).versions()
    meta = read_meta(model_dir)
    return [VersionInfo(meta.version, meta.created, meta.valid_p1, meta.version == served.version, len(meta.labels))]


def rounds(registry: Registry | None, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` promotions, rejections, failures and rollbacks, newest first."""
    if registry is None:
        return []
    return [entry for entry in reversed(registry.history()) if entry.get("action") in ROUND_ACTIONS][:limit]


def rejected_in_a_row(registry: Registry | None) -> int:
    """Rounds rejected or failed since the last promotion (the learner's alert fires at 3)."""
    count = 0
    for entry in rounds(registry, limit=1_000):
        if entry["action"] in ("promote", "rollback"):
            break
        count += 1
    return count


@dataclass(frozen=True)
class QueueStatus:
    """The corrections stream as the learner's consumer group sees it."""

    stream_length: int  # entries kept in tagger:corrections
    pending: int  # delivered to a learner, not yet acknowledged
    waiting: int | None  # not yet delivered to any learner (None: Redis cannot tell)
    learner_seen: bool  # whether a learner ever created its consumer group
    examples: int  # corrected documents stored for training
    rejected: dict[str, int]  # rejected corrections by reason


def queue_status(client: RedisClient) -> QueueStatus:
    """The corrections queue, in two round trips."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(CORRECTIONS)
    pipe.hlen(EXAMPLES)
    pipe.hgetall(REJECTED)
    length, examples, rejected = pipe.execute()
    group = _group(client) if length or client.exists(CORRECTIONS) else None
    counts = {key.decode(): int(value) for key, value in rejected.items()}
    if group is None:
        return QueueStatus(length, 0, length, False, examples, counts)
    waiting = group.get("lag")
    return QueueStatus(length, int(group.get("pending", 0)), None if waiting is None else int(waiting), True,
                       examples, counts)


def _group(client: RedisClient) -> dict[str, Any] | None:
    """The learners' consumer group as XINFO GROUPS reports it, or None when there is none."""
    groups: Any = client.xinfo_groups(CORRECTIONS)
    for group in groups:
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == LEARNERS:
            return dict(group)
    return None


@dataclass(frozen=True)
class LearnerStatus:
    """The learner as the review page shows it."""

    queue: QueueStatus
    rounds: list[dict[str, Any]]
    rejected_in_a_row: int


def learner_status(client: RedisClient, registry: Registry | None) -> LearnerStatus:
    """The corrections queue and the latest rounds."""
    return LearnerStatus(queue_status(client), rounds(registry), rejected_in_a_row(registry))
