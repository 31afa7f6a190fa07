"""Fault injection against the real broker, Redis and worker subprocesses: nothing produced is lost.

The default run keeps a short version of each scenario (one fault, a few thousand documents); the
full-size runs (≥ 20,000 documents, five kills) are marked slow and are what ``benchmarks/faults.py``
reports in docs/reliability.md. The scenarios live in :mod:`benchmarks.rig.scenarios`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.rig import scenarios
from benchmarks.rig.chaos import FaultResult, Rig, proxied_broker
from tests.integration.conftest import wait_until
from worker.services import Service

pytestmark = pytest.mark.integration


def assert_nothing_lost(result: FaultResult) -> None:
    """Every produced document tagged, every offset committed, and the counts add up."""
    assert result.produced > 0 and result.checks["send_failures"] == 0, result
    assert result.lost == 0 and result.tagged == result.produced, result
    assert result.reprocessed >= 0, result  # every document written at least once
    assert result.checks["committed"] == result.checks["messages"], result


def test_worker_killed_mid_stream_during_a_promotion_loses_nothing(tansu: Service, model_dir: Path,
                                                                   tmp_path: Path) -> None:
    result = scenarios.worker_kills(tansu.address, model_dir, tmp_path, docs=1200, rate=300, kills=1,
                                    promotions=1, seed=1)
    assert_nothing_lost(result)
    assert result.checks["unknown_model"] == 0 and result.checks["prediction_mismatches"] == 0, result
    assert sum(result.checks["docs_per_model"].values()) == result.tagged


def test_redis_killed_mid_stream_loses_nothing(tansu: Service, model_dir: Path, tmp_path: Path) -> None:
    result = scenarios.redis_kill(tansu.address, model_dir, tmp_path, docs=1000, rate=300, outage_s=2, seed=1)
    assert_nothing_lost(result)
    assert result.checks["redis_errors_seen_by_worker"] >= 1 and result.checks["worker_alive"], result


def test_broker_unreachable_at_start_and_mid_stream_loses_nothing(model_dir: Path, tmp_path: Path) -> None:
    result = scenarios.broker_outage(tmp_path, model_dir, docs=1000, rate=300, at_start_s=3, mid_s=3, seed=1)
    assert_nothing_lost(result)
    assert result.checks["warned_at_start_after_s"] < 60 and result.checks["warned_mid_stream_after_s"] < 60
    assert result.checks["worker_alive"], result
    assert len(result.recovery_s) == 2


def test_one_of_two_workers_killed_the_survivor_takes_over(tansu: Service, model_dir: Path,
                                                           tmp_path: Path) -> None:
    result = scenarios.peer_kill(tansu.address, model_dir, tmp_path, docs=2000, rate=300, seed=1)
    assert_nothing_lost(result)
    assert all(share > 0 for share in result.checks["tagged_before_kill"]), result  # both were working
    assert result.checks["sent_before_kill"] < 2000, result  # killed mid-stream
    assert result.checks["survivor_partitions"] == 4


@pytest.mark.slow
def test_full_size_faults_lose_nothing(tansu: Service, model_dir: Path, tmp_path: Path) -> None:
    """The benchmark's sizes: 20,000 documents per scenario, five kills, a 10 s broker outage."""
    kills = scenarios.worker_kills(tansu.address, model_dir, tmp_path / "kills", docs=20_000, rate=150, kills=5,
                                   promotions=2)
    assert kills.checks["unknown_model"] == 0 and kills.checks["prediction_mismatches"] == 0, kills
    for result in (kills,
                   scenarios.redis_kill(tansu.address, model_dir, tmp_path / "redis", 20_000, 500, outage_s=5),
                   scenarios.broker_outage(tmp_path / "broker", model_dir, 20_000, 500, at_start_s=10, mid_s=10),
                   scenarios.peer_kill(tansu.address, model_dir, tmp_path / "peer", 20_000, 500)):
        assert_nothing_lost(result)


def test_sigterm_while_the_broker_is_unreachable_exits_in_bounded_time(model_dir: Path, tmp_path: Path) -> None:
    with proxied_broker(tmp_path) as proxy:
        rig = Rig(proxy.address, model_dir, tmp_path)
        try:
            worker = rig.start_worker()
            rig.wait_ready(worker)
            feed = rig.feed(200, rate=0)
            feed.join()
            wait_until(lambda: len(rig.tagged(feed.acked)) == 200, 60, "documents tagged")
            proxy.cut()
            scenarios.broker_warning(rig, worker, len(rig.log_text()))
            started = time.monotonic()
            assert worker.terminate(timeout=60) == 0
            assert time.monotonic() - started < 20  # commit and leave-group waits are bounded (2 s each)
        finally:
            rig.close()
