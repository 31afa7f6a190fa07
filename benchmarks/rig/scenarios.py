"""The fault scenarios: each streams documents through real workers, injects one kind of fault, and returns
a :class:`benchmarks.rig.chaos.FaultResult`. The tests run them small, ``benchmarks/faults.py`` at full size.

- :func:`worker_kills`: SIGKILL the worker at random points, restarting it each time, while new model
  versions are published; then every tag's model must be a published version and equal that version's
  own prediction for the document (no document tagged by a half-loaded model).
- :func:`redis_kill`: SIGKILL the (append-only) Redis mid-stream, restart it after a pause.
- :func:`broker_outage`: the broker unreachable when the worker starts and/or for a while mid-stream
  (a :class:`benchmarks.rig.proxy.TcpProxy` in front of a private tansu).
- :func:`peer_kill`: two workers in one group, one SIGKILLed; the survivor takes its partitions.

Recovery time is measured from the end of the fault (restart issued, Redis or broker back, peer gone)
to the first document tagged after it, so it includes process start, model load and the group rejoin.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.rig.chaos import FaultResult, Feed, Rig, ScenarioError, proxied_broker, small_model, wait_for
from benchmarks.rig.process import ServeProcess
from benchmarks.rig.proxy import TcpProxy
from model.tagger import Tagger
from worker.learn.registry import Registry
from worker.store.client import read_tags
from worker.store.keys import tags_key

__all__ = ["broker_outage", "broker_warning", "peer_kill", "redis_kill", "verify_models", "worker_kills"]

log = logging.getLogger(__name__)


def _at(started: float, offset_s: float) -> None:
    """Wait until ``offset_s`` after ``started``: the fault schedule, not a synchronisation."""
    time.sleep(max(0.0, started + offset_s - time.monotonic()))


def _tagging_again(worker: ServeProcess, since: float, timeout: float = 180) -> float:
    """Seconds from now until ``worker`` has tagged more than ``since`` documents."""
    def tagging() -> bool:
        if worker.process.poll() is not None:
            raise ScenarioError(f"worker exited with {worker.process.returncode}; log {worker.log_path}")
        return worker.tagged() > since
    return wait_for(tagging, timeout, "documents tagged again", every=0.1)


def worker_kills(broker: str, model: Path, workdir: Path, docs: int, rate: float, kills: int,
                 promotions: int = 1, seed: int = 0) -> FaultResult:
    """SIGKILL and restart the worker ``kills`` times during a paced stream: the first kill at a random
    10-30% of the stream, each later one a random 0.5-6 s after the restarted worker tags again (a fixed
    schedule would be overtaken by the restarts). Publish ``promotions`` new model versions, each a random
    0-1.5 s before one of the kills, so a kill may land while the new version loads."""
    rng = random.Random(seed)
    registry = Registry(workdir / "registry")
    published = [registry.publish(model)]
    candidates = [small_model(workdir / f"candidate-{i}", seed=100 + i) for i in range(promotions)]
    rig = Rig(broker, registry.root, workdir)
    try:
        worker = rig.start_worker()
        rig.wait_ready(worker)
        promote_before = dict(zip(rng.sample(range(kills), min(promotions, kills)), candidates, strict=False))
        started = time.monotonic()
        feed, recovery, kill_at = rig.feed(docs, rate), [], []
        at = rng.uniform(0.1, 0.3) * docs / rate
        for k in range(kills):
            if k in promote_before:
                _at(started, at - rng.uniform(0.0, 1.5))
                published.append(registry.publish(promote_before[k]))
            _at(started, at)
            before = worker.tagged()
            worker.kill()
            killed = time.monotonic()
            kill_at.append(killed - started)
            log.info("kill %d/%d at %.1f s (the worker had tagged %.0f)", k + 1, kills, killed - started, before)
            worker = rig.start_worker()
            _tagging_again(worker, 0)
            recovery.append(time.monotonic() - killed)
            at = time.monotonic() - started + rng.uniform(0.5, 6.0)
        feed.join()
        result = rig.result("worker SIGKILL + restart", f"kill -9 ×{kills} at random points, {promotions} model "
                            f"promotion(s) during the kills", feed, recovery, started,
                            kill_at_s=[round(a, 1) for a in kill_at])
        result.checks.update(verify_models(rig, registry, published, feed))
        return result
    finally:
        rig.close()


def verify_models(rig: Rig, registry: Registry, published: list[str], feed: Feed) -> dict[str, Any]:
    """Each stored tag's model is a published version, and its tags equal that version's own prediction."""
    ids = sorted(rig.tagged(list(feed.texts)))
    pipe = rig.client.pipeline(transaction=False)
    for doc_id in ids:
        pipe.hmget(tags_key(doc_id), "model", "tags")
    by_version: dict[str, list[tuple[str, list[tuple[str, float]]]]] = {}
    for doc_id, (model, tags) in zip(ids, pipe.execute(), strict=True):
        by_version.setdefault(model.decode(), []).append((doc_id, read_tags(tags)))
    mismatched = 0
    for version, stored in by_version.items():
        if version not in published:
            continue
        tagger = Tagger.load(registry.path(version), "cpu")
        expected = tagger.predict([feed.texts[doc_id] for doc_id, _ in stored], len(stored[0][1]))
        mismatched += sum(not _same(tags, want) for (_, tags), want in zip(stored, expected, strict=True))
    return {"published": published, "docs_per_model": {v: len(s) for v, s in by_version.items()},
            "unknown_model": sum(len(s) for v, s in by_version.items() if v not in published),
            "prediction_mismatches": mismatched}


def _same(stored: list[tuple[str, float]], expected: list[tuple[str, float]], tolerance: float = 1e-4) -> bool:
    """Same labels in the same order, scores equal up to float noise of a different batch composition."""
    return [label for label, _ in stored] == [label for label, _ in expected] and all(
        abs(score - want) <= tolerance for (_, score), (_, want) in zip(stored, expected, strict=True))


def redis_kill(broker: str, model: Path, workdir: Path, docs: int, rate: float, outage_s: float,
               seed: int = 0) -> FaultResult:
    """SIGKILL Redis (append-only file) at a random point mid-stream; restart it ``outage_s`` later."""
    rng = random.Random(seed)
    rig = Rig(broker, model, workdir)
    try:
        worker = rig.start_worker()
        rig.wait_ready(worker)
        started = time.monotonic()
        feed = rig.feed(docs, rate)
        _at(started, rng.uniform(0.2, 0.5) * docs / rate)
        rig.kill_redis()
        killed = time.monotonic()
        _at(killed, outage_s)
        errors = _redis_errors(worker)
        rig.redis.restart()
        rig.client.connection_pool.disconnect()
        recovery = [_tagging_again(worker, worker.tagged())]
        return rig.result("Redis SIGKILL + restart", f"kill -9 of Redis (appendonly yes) mid-stream, restarted "
                          f"after {outage_s:.0f} s", feed, recovery, started, redis_errors_seen_by_worker=errors,
                          worker_alive=worker.process.poll() is None)
    finally:
        rig.close()


def _redis_errors(worker: ServeProcess) -> float:
    return sum(v for _, v in worker.samples().get("tagger_redis_errors_total", []))


def broker_outage(workdir: Path, model: Path, docs: int, rate: float, at_start_s: float, mid_s: float,
                  seed: int = 0) -> FaultResult:
    """The broker unreachable for ``at_start_s`` when the worker starts and/or ``mid_s`` mid-stream."""
    with proxied_broker(workdir) as proxy:
        return _broker_outage(proxy, model, workdir, docs, rate, at_start_s, mid_s, random.Random(seed))


def _broker_outage(proxy: TcpProxy, model: Path, workdir: Path, docs: int, rate: float, at_start_s: float,
                   mid_s: float, rng: random.Random) -> FaultResult:
    rig = Rig(proxy.address, model, workdir)
    try:
        recovery: list[float] = []
        checks: dict[str, Any] = {}
        if at_start_s:
            proxy.cut()
        cut_at = time.monotonic()
        worker = rig.start_worker()
        if at_start_s:
            checks["warned_at_start_after_s"] = broker_warning(rig, worker)
            _at(cut_at, at_start_s)
            checks["outage_at_start_s"] = round(time.monotonic() - cut_at, 1)
            proxy.restore()
            recovery.append(rig.wait_ready(worker))
        else:
            rig.wait_ready(worker)
        started = time.monotonic()
        feed = rig.feed(docs, rate)
        if mid_s:
            _at(started, rng.uniform(0.3, 0.5) * docs / rate)
            logged = len(rig.log_text())
            proxy.cut()
            cut_at = time.monotonic()
            checks["warned_mid_stream_after_s"] = broker_warning(rig, worker, logged)
            _at(cut_at, mid_s)
            checks["outage_mid_stream_s"] = round(time.monotonic() - cut_at, 1)
            proxy.restore()
            recovery.append(_tagging_again(worker, worker.tagged()))
        parts = [f"unreachable for {at_start_s:.0f} s at worker start"] if at_start_s else []
        parts += [f"unreachable for {mid_s:.0f} s mid-stream"] if mid_s else []
        injected = " and ".join(parts)
        return rig.result("broker unreachable", f"TCP proxy in front of the broker refuses and drops connections: "
                          f"{injected}", feed, recovery, started, worker_alive=worker.process.poll() is None,
                          **checks)
    finally:
        rig.close()


def broker_warning(rig: Rig, worker: ServeProcess, logged: int = 0, timeout: float = 60) -> float:
    """Seconds until the worker's log (past its first ``logged`` characters) warns that the broker is
    unreachable; the worker must stay alive meanwhile."""
    def warned() -> bool:
        if worker.process.poll() is not None:
            raise ScenarioError(f"worker exited with {worker.process.returncode}; log {worker.log_path}")
        text = rig.log_text()[logged:]
        return "kafka broker unreachable" in text or "no Kafka broker reachable" in text
    return round(wait_for(warned, timeout, "a broker-unreachable warning in the worker log", every=0.2), 2)


def peer_kill(broker: str, model: Path, workdir: Path, docs: int, rate: float, seed: int = 0) -> FaultResult:
    """Two workers in one group; SIGKILL one at a random point mid-stream; the survivor must take over."""
    rng = random.Random(seed)
    rig = Rig(broker, model, workdir)
    try:
        pair = [rig.start_worker(), rig.start_worker()]
        for worker in pair:
            rig.wait_ready(worker)
        # The second worker's join rebalances the first: start the stream once the group has settled, so
        # the kill lands on two workers that both own partitions.
        wait_for(lambda: all(_assigned(w) > 0 for w in pair) and sum(map(_assigned, pair)) == 4, 120,
                 "both workers owning partitions", every=0.1)
        started = time.monotonic()
        feed = rig.feed(docs, rate)
        _at(started, rng.uniform(0.2, 0.5) * docs / rate)
        # On a loaded machine the schedule can come before either worker has tagged: the fault is a kill
        # of a worker that was working, so wait for that too.
        wait_for(lambda: all(w.tagged() > 0 for w in pair), 120, "both workers tagging", every=0.05)
        victim = rng.choice(pair)
        survivor = pair[1 - pair.index(victim)]
        shares = [w.tagged() for w in pair]
        sent = len(feed.acked)
        victim.kill()
        killed = time.monotonic()
        wait_for(lambda: _assigned(survivor) == 4, 120, "the survivor owning all partitions", every=0.1)
        # Counted from the kill, not from the takeover: on a loaded machine the survivor can drain the
        # victim's whole backlog between the takeover and a later baseline, and then never tag "again".
        _tagging_again(survivor, shares[pair.index(survivor)])
        return rig.result("one of two workers SIGKILLed", "two workers in one group, kill -9 of one mid-stream",
                          feed, [time.monotonic() - killed], started, tagged_before_kill=shares, sent_before_kill=sent,
                          survivor_partitions=_assigned(survivor), recovery_includes="session timeout 6 s")
    finally:
        rig.close()


def _assigned(worker: ServeProcess) -> float:
    """How many input partitions the worker owns now."""
    return sum(v for _, v in worker.samples().get("tagger_assigned_partitions", []))
