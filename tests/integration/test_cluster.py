"""The worker, lookups, corrections and the learner on a real local 3-node Redis Cluster; wrong modes fail
at start with one line; a node restarted mid-stream loses nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from benchmarks.rig import chaos
from model.errors import ConfigError
from model.tagger import Tagger
from tests.integration.conftest import Stream, WorkerProcess, wait_until
from tests.integration.test_feedback import TEST, submit_truth, tag_documents, weak_model
from worker.learn.learner import Learner
from worker.learn.registry import Registry, resolve
from worker.services import RedisClusterService, start_redis_cluster
from worker.settings import RedisSettings, Secret, Settings
from worker.store.client import TagClient
from worker.store.connection import connect
from worker.store.keys import CORRECTIONS, EXAMPLES, LEARNERS, RECENT, doc_key
from worker.store.writer import TagRecord, TagWriter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterService]:
    if shutil.which("redis-cli") is None:
        pytest.skip("a local Redis Cluster needs redis-cli (Debian package redis-tools)")
    started = start_redis_cluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


@pytest.fixture()
def client(cluster: RedisClusterService) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url)
    yield client
    client.close()


def on_cluster(start_worker: Callable[..., WorkerProcess], cluster: RedisClusterService) -> WorkerProcess:
    worker = start_worker(TAGGER_REDIS_URL=cluster.url, TAGGER_REDIS_CLUSTER="1")
    worker.wait_ready()
    return worker


def test_every_document_is_tagged_across_the_nodes_and_looked_up_in_one_call(
        stream: Stream, start_worker: Callable[..., WorkerProcess], cluster: RedisClusterService,
        client: RedisCluster) -> None:
    worker = on_cluster(start_worker, cluster)
    docs = stream.documents(300)
    stream.produce([value for _, value in docs])
    ids = [doc_id for doc_id, _ in docs]
    wait_until(lambda: len(chaos.tagged_ids(client, ids)) == 300, 60, "all documents tagged on the cluster")
    assert all(redis.Redis(port=node.port).dbsize() > 0 for node in cluster.nodes)  # every node holds some
    assert {m.decode() for m in client.zrange(RECENT, 0, -1)} >= set(ids)  # the review page's recent list
    found = TagClient(client).lookup(ids)
    assert all(result is not None and len(result.tags) == 5 for result in found.values())
    assert json.loads(client.get(doc_key(ids[0])))["text"] == json.loads(docs[0][1])["text"]  # type: ignore[arg-type]
    looked_up = subprocess.run([sys.executable, "-m", "worker.cli", "lookup", ids[0], "--redis-url", cluster.url,
                                "--redis-cluster", "1"], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(looked_up.stdout)["result"]["tags"] == [list(t) for t in found[ids[0]].tags]  # type: ignore[union-attr]
    assert worker.terminate() == 0
    wait_until(lambda: sum(stream.committed().values()) == 300, 30, "all offsets committed")


def test_corrections_and_a_learning_round_work_on_the_cluster(cluster: RedisClusterService, client: RedisCluster,
                                                              tmp_path: Path) -> None:
    client.delete(CORRECTIONS, EXAMPLES)
    registry = Registry(tmp_path / "registry")
    registry.publish(weak_model(tmp_path / "v1"))
    live = Tagger.load(resolve(registry.root), "cpu")
    docs = TEST.subset(range(300))
    tag_documents(client, live, docs)
    submit_truth(client, live, docs)  # validated, rate-limited, streamed: as `tagger correct` does
    settings = Settings.of(model_dir=str(registry.root), redis_url=cluster.url, redis_cluster="1",
                           finetune_min_examples=20, finetune_every=20, finetune_epochs=8, finetune_lr=3e-3,
                           promote_epsilon=0.02, tag_cut=0.5, metrics_port=0, metrics_host="127.0.0.1")
    learner = Learner(settings, client)
    stored = learner.ingest()
    assert stored > 50 and client.hlen(EXAMPLES) == stored
    assert client.xpending(CORRECTIONS, LEARNERS)["pending"] == 0
    outcome = learner.run_round()
    assert outcome.result == "promoted", outcome
    assert registry.current() == outcome.version != live.version


def test_the_wrong_mode_is_a_one_line_error_at_start(stream: Stream, start_worker: Callable[..., WorkerProcess],
                                                     cluster: RedisClusterService) -> None:
    plain = start_worker(TAGGER_REDIS_URL=cluster.url)
    assert plain.process.wait(60) == 2
    assert "is a Redis Cluster node; set TAGGER_REDIS_CLUSTER=1" in plain.log_path.read_text().splitlines()[-1]
    clustered = start_worker(TAGGER_REDIS_CLUSTER="1")  # the stream's single redis-server
    assert clustered.process.wait(60) == 2
    assert "is not in cluster mode; unset it" in clustered.log_path.read_text().splitlines()[-1]


def test_a_node_restarted_mid_stream_loses_nothing(stream: Stream, start_worker: Callable[..., WorkerProcess],
                                                   cluster: RedisClusterService, client: RedisCluster) -> None:
    worker = on_cluster(start_worker, cluster)
    first, second = stream.documents(400), stream.documents(400, start=400)
    ids = [doc_id for doc_id, _ in first + second]
    stream.produce([value for _, value in first])
    wait_until(lambda: len(chaos.tagged_ids(client, ids[:400])) == 400, 60, "the first half tagged")
    cluster.nodes[1].stop()  # its slots are down: writes fail until it is back
    stream.produce([value for _, value in second])
    wait_until(lambda: worker_metric(worker, "tagger_redis_errors_total") >= 1, 60, "a failed write")
    cluster.nodes[1].restart()
    cluster.wait_ok()
    wait_until(lambda: len(chaos.tagged_ids(client, ids)) == 800, 90, "every document tagged after the restart")
    wait_until(lambda: sum(stream.committed().values()) == 800, 30, "all offsets committed")
    assert worker.terminate() == 0


def worker_metric(worker: WorkerProcess, name: str) -> float:
    """The sum of a metric's samples (0 while the worker does not answer)."""
    return sum(value for _, value in worker.samples().get(name, []))


def test_a_cluster_with_a_password_takes_it_from_the_settings_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("a local Redis Cluster needs redis-cli (Debian package redis-tools)")
    guarded = start_redis_cluster(tmp_path / "guarded", password="s3cret")
    try:
        settings = RedisSettings(redis_url=guarded.url, redis_password=Secret("s3cret"), redis_cluster=True)
        client = connect(settings, wait=False)
        TagWriter(client).write([TagRecord("p1", [("a", 0.9)], "text", "docs", 0, 1, 1000)], "v1")
        assert TagClient(client).lookup(["p1"])["p1"].tags == [("a", 0.9)]  # type: ignore[union-attr]
        with pytest.raises(ConfigError, match="refused to authenticate"):
            connect(RedisSettings(redis_url=guarded.url, redis_password=Secret("wrong"), redis_cluster=True),
                    wait=False)
    finally:
        guarded.stop()
