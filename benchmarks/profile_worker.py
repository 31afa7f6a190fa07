"""Where the worker's time goes: a sampling profile of ``tagger serve`` draining a backlog, by stage.

    python -m benchmarks.profile_worker [--datasets reuters cooking] [--docs 20000] [--model DIR] [--json FILE]

Pre-loads ``--docs`` documents into a fresh 4-partition topic on the embedded broker, starts the worker
(the default model, 5 epochs, or ``--model``), and samples its threads with py-spy (``pip install
py-spy``) at 200 Hz while it drains the backlog into Redis. Each sample's innermost frame of interest names
its stage (first match from the innermost frame outwards):

    poll/decode  kafka-python fetching and decoding record batches (``kafka/``)
    parse        JSON decoding and validation (``worker/stream/messages.py``)
    featurize    tokenising and tf-idf (``model/text.py``)
    model        the Rank-AE forward pass and top-k (``torch``, ``model/rank_ae.py``)
    redis        building and sending the write pipeline (``redis/``, ``worker/store/``)
    other        everything else (the batcher, metrics, commit bookkeeping)

and its thread: ``prediction`` (the pipeline's thread, ``concurrent/futures/thread.py`` in the stack) or
``loop``. py-spy leaves out idle threads, so a sample is 5 ms of one thread running (or waiting for the GIL).

Prints one markdown table: share of samples and thread-µs per document per stage and thread.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from benchmarks.quality import DATASETS, benchmark_parser, start_benchmark
from benchmarks.stream import PARTITIONS, WorkerRun, model_for, payloads, produce, services
from worker.settings import KafkaSettings
from worker.stream.kafka import create_topic

log = logging.getLogger("benchmarks.profile_worker")

# (stage, path fragments of a frame's file that place a sample in it), tried from the innermost frame out.
STAGES = (
    ("parse", ("stream/messages.py", "json/")),
    ("featurize", ("model/text.py",)),
    ("model", ("torch/", "model/rank_ae.py")),
    ("redis", ("redis/", "worker/store/")),
    ("poll/decode", ("kafka/",)),
)


RATE_HZ = 200


def stage_of(stack: str) -> tuple[str, str]:
    """(stage, thread) of one collapsed py-spy stack (frames ``func (file:line)`` joined by ``;``, outermost
    first)."""
    thread = "prediction" if "concurrent/futures/thread.py" in stack else "loop"
    for frame in reversed(stack.split(";")):
        for stage, fragments in STAGES:
            if any(fragment in frame for fragment in fragments):
                return stage, thread
    return "other", thread


def profile(raw: Path) -> Counter[tuple[str, str]]:
    """Samples per (stage, thread) from py-spy's ``--format raw`` output (one ``stack count`` line per stack)."""
    samples: Counter[tuple[str, str]] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stage_of(stack)] += int(count)
    return samples


def main() -> None:
    """Drain a backlog under py-spy and print the per-stage table."""
    parser = benchmark_parser(__doc__, ("reuters",))
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--model", type=Path, help="checkpoint to serve (default: train the default, 5 epochs)")
    args = parser.parse_args()
    start_benchmark()
    beside = Path(sys.executable).with_name("py-spy")  # installed into the same environment
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="profile-worker-"))
    for name in args.datasets:
        train_corpus, test = DATASETS[name].load()
        model = args.model or model_for(train_corpus, workdir / f"model-{name}", 2 if args.quick else 5)
        with services(workdir / name) as (broker, redis):
            topic = f"profile-{uuid.uuid4().hex[:6]}"
            create_topic(KafkaSettings(kafka_bootstrap_servers=broker.address), topic, PARTITIONS)
            produce(broker.address, topic, payloads(test, args.docs, topic))
            raw = workdir / f"{name}.raw"
            worker = WorkerRun(broker, redis, model, topic, workdir / f"{name}-worker.log", TAGGER_TORCH_THREADS="1")
            try:
                sampler = subprocess.Popen([spy, "record", "--pid", str(worker.process.pid), "--rate", str(RATE_HZ),
                                            "--format", "raw", "--output", str(raw), "--nonblocking"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                started = time.perf_counter()
                rate = worker.drain_rate(args.docs, 600)
                seconds = time.perf_counter() - started
                sampler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                sampler.wait(timeout=60)
            finally:
                worker.terminate()
        samples = profile(raw)
        total = sum(samples.values()) or 1
        print(f"### {name}: {args.docs:,} documents drained at {rate:,.0f} docs/s ({seconds:.1f} s sampled)\n")
        print("| stage | thread | share of samples | thread-µs per document |\n|---|---|---|---|")
        for (stage, thread), count in samples.most_common():
            print(f"| {stage} | {thread} | {100 * count / total:.1f}% | {1e6 * count / RATE_HZ / args.docs:.0f} |")
        print()
        if args.json:
            args.json.write_text(json.dumps({"dataset": name, "docs_per_s": rate, "seconds": seconds,
                                             "samples": {f"{s}/{t}": n for (s, t), n in samples.items()}}))


if __name__ == "__main__":
    main()
