"""``tagger demo``: the whole product on one machine, in one command.

Starts the embedded broker (tansu) and redis-server on free ports unless real ones are configured,
trains a model (or reuses one), creates the input topic with several partitions, produces documents at
a chosen rate, runs the worker, shows live docs/s and p50/p99 latency, prints a few lookups beside the
documents' true labels, and shuts everything down on Ctrl-C or when done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from model.data import Corpus, hash_split, read_corpus
from model.encoder import ENCODERS
from worker.cli.running import epoch_progress
from worker.metrics import histogram_quantile
from worker.services import free_port, start_redis, start_tansu
from worker.settings import Settings, load
from worker.stream import kafka as kafka_clients
from worker.stream.kafka import create_topic

if TYPE_CHECKING:
    from worker.stream.service import Service

__all__ = ["register"]

log = logging.getLogger(__name__)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
DATASETS = {"reuters21578": ("reuters21578/apte90_train.jsonl", "reuters21578/apte90_test.jsonl")}


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``tagger demo`` to the parser."""
    demo = commands.add_parser("demo", help="run broker, Redis, model and worker locally and stream documents")
    demo.add_argument("--data", choices=["generated", *DATASETS], default="generated",
                      help="documents to train on and stream (shared sets are read from ../shared/data)")
    demo.add_argument("--model", type=Path, help="use this checkpoint instead of training one")
    demo.add_argument("--encoder", choices=sorted(ENCODERS),
                      help="train with this pretrained text encoder beside the tf-idf features (slower on a CPU)")
    demo.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="models and service files")
    demo.add_argument("--rate", type=float, default=500.0, help="documents produced per second")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to produce")
    demo.add_argument("--partitions", type=int, default=4)
    demo.add_argument("--lookups", type=int, default=5, help="documents to look up at the end")
    demo.set_defaults(handler=cmd_demo)


def _corpora(data: str) -> tuple[Corpus, Corpus]:
    if data == "generated":
        from model.synthetic import generate_corpus

        return hash_split(generate_corpus(3000, 20, seed=0), 0.2, seed=0)
    train, test = DATASETS[data]
    if not (SHARED / train).exists():
        raise SystemExit(f"tagger demo: {SHARED / train} not found; use --data generated")
    return read_corpus(SHARED / train), read_corpus(SHARED / test)


def _model(args: argparse.Namespace, train_corpus: Corpus) -> Path:
    """The checkpoint to serve: --model, a previously trained one, or a fresh one."""
    from model import checkpoint
    from model.config import preset
    from model.errors import CheckpointError
    from model.trainer import train

    if args.model:
        return Path(args.model)
    out = args.workdir / (f"model-{args.data}-{args.encoder}" if args.encoder else f"model-{args.data}")
    try:
        checkpoint.load(out)
        print(f"using the model trained earlier in {out}")
        return out
    except CheckpointError:
        pass
    print(f"training a model on {len(train_corpus)} {args.data} documents (once; reused next time) ...")
    trained = train(train_corpus, *preset("default", encoder=args.encoder or ""), progress=epoch_progress())
    checkpoint.save(trained, out)
    return out


def _services(args: argparse.Namespace, stack: ExitStack, model_dir: Path) -> Settings:
    """Settings pointing at configured Kafka/Redis, or at embedded ones started here."""
    env = dict(os.environ)
    workdir = Path(tempfile.mkdtemp(prefix="services-", dir=args.workdir))
    stack.push(_remove_unless_failed(workdir))  # registered first, so it runs after the services stopped
    if "TAGGER_KAFKA_BOOTSTRAP_SERVERS" not in env:
        broker = start_tansu(workdir / "tansu")
        stack.callback(broker.stop)
        env.update(TAGGER_KAFKA_BOOTSTRAP_SERVERS=broker.address, TAGGER_SESSION_TIMEOUT_MS="6000",
                   TAGGER_HEARTBEAT_INTERVAL_MS="1000")
        print(f"embedded Kafka-protocol broker (tansu) on {broker.address}")
    if "TAGGER_REDIS_URL" not in env:
        store = start_redis(workdir / "redis")
        stack.callback(store.stop)
        env["TAGGER_REDIS_URL"] = f"redis://{store.address}/0"
        print(f"embedded redis-server on {store.address}")
    run = uuid.uuid4().hex[:6]
    return load(env, {"input_topic": f"demo-{run}", "dlq_topic": f"demo-{run}.dlq",
                               "group_id": f"demo-{run}", "metrics_port": free_port(),
                               "metrics_host": "127.0.0.1", "model_dir": str(model_dir)})


def _produce(settings: Settings, test: Corpus, rate: float, seconds: float,
             stop: threading.Event, sent: list[str]) -> None:
    """Send test documents (cycled, with fresh ids) at ``rate`` per second until done or stopped."""
    producer = kafka_clients.producer(settings.kafka)
    texts = test.texts or []
    started, total = time.monotonic(), int(rate * seconds)
    for i in range(total):
        due = started + i / rate
        if stop.wait(max(0.0, due - time.monotonic())):  # paces the producer; returns early on Ctrl-C
            break
        doc = i % len(test)
        doc_id = f"{test.ids[doc]}#{i}"
        producer.send(settings.kafka.input_topic, json.dumps({"id": doc_id, "text": texts[doc]}).encode())
        sent.append(doc_id)
    producer.flush(timeout=10)
    producer.close(timeout=5)


def _report(worker: Service, producer: threading.Thread, sent: list[str], stop: threading.Event,
            grace_s: float = 30.0) -> None:
    """Print docs/s and p50/p99 end-to-end latency once a second until everything sent is tagged."""
    metrics = worker.metrics
    previous, finished_at = 0.0, None
    while not stop.wait(1.0):
        done = metrics.registry.get_sample_value("tagger_messages_total", {"outcome": "tagged"}) or 0.0
        p50, p99 = (histogram_quantile(metrics.end_to_end, q) for q in (0.5, 0.99))
        latency = "" if p50 is None or p99 is None else f"  p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms"
        print(f"produced {len(sent):6d}  tagged {int(done):6d}  {done - previous:6.0f} docs/s{latency}")
        previous = done
        if not producer.is_alive():
            finished_at = finished_at or time.monotonic()
            if done >= len(sent) or time.monotonic() - finished_at > grace_s:
                return


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo end to end; every process it started is stopped before it returns."""
    from worker.stream.service import Service

    if not args.verbose:  # the demo speaks for itself; kafka-python's connection errors become its one-line error
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    args.workdir.mkdir(parents=True, exist_ok=True)
    train_corpus, test = _corpora(args.data)
    model_dir = _model(args, train_corpus)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with ExitStack() as stack:
        settings = _services(args, stack, model_dir)
        create_topic(settings.kafka, settings.kafka.input_topic, args.partitions)
        create_topic(settings.kafka, settings.kafka.dlq_topic, 1)
        worker = Service(settings)
        runner = threading.Thread(target=worker.run, name="worker")
        runner.start()
        stack.callback(runner.join)
        stack.callback(worker.stop)
        _wait(lambda: worker.ready() or not runner.is_alive(), 60, stop)
        print(f"worker ready on {settings.kafka.input_topic} ({args.partitions} partitions); metrics on "
              f"http://127.0.0.1:{worker.metrics_port}/metrics")
        sent: list[str] = []
        producer = threading.Thread(target=_produce, args=(settings, test, args.rate, args.seconds, stop, sent))
        producer.start()
        _report(worker, producer, sent, stop)
        producer.join()
        if stop.is_set():
            tagged = worker.metrics.registry.get_sample_value("tagger_messages_total", {"outcome": "tagged"})
            print(f"\ninterrupted: produced {len(sent)}, tagged {int(tagged or 0)}; stopping worker, broker and Redis")
        else:
            _show_lookups(settings, test, sent[: args.lookups])
    return 0


def _remove_unless_failed(folder: Path) -> Callable[..., bool]:
    """An ExitStack exit callback: remove ``folder`` (the services' logs) unless the demo failed."""
    def exit_callback(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is None:
            shutil.rmtree(folder, ignore_errors=True)
        return False
    return exit_callback


def _wait(condition: Callable[[], bool], timeout: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline and not stop.wait(0.1):
        continue


def _show_lookups(settings: Settings, test: Corpus, ids: list[str]) -> None:
    from worker.store.client import TagClient
    from worker.store.connection import connect

    truth = dict(zip(test.ids, test.labels, strict=True))
    print("\nlookups (tagger lookup ID):")
    for doc_id, found in TagClient(connect(settings.redis)).lookup(ids).items():
        tags = "not tagged yet" if found is None else ", ".join(f"{n} {s:.2f}" for n, s in found.tags[:3])
        print(f"  {doc_id:24s} true: {', '.join(truth[doc_id.split('#')[0]]):30s} predicted: {tags}")
