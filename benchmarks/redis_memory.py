"""Redis memory per tagged document: what ``tagger:tags:{id}`` and ``tagger:doc:{id}`` cost.

    python -m benchmarks.redis_memory [--docs 3000] [--data FILE.jsonl | --generated]

Starts a private redis-server, writes the documents through the worker's own ``TagWriter`` (top-5 tags,
the default TTLs, batches of 256 as the worker's largest), and reports ``MEMORY USAGE`` per key (exact:
SAMPLES 0) and the growth of ``INFO memory`` used_memory per document. Texts come from the shared
Reuters-21578 test set when present (real lengths), else from the generator.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

import redis

from model.data import Corpus, read_jsonl
from model.synthetic import generate_corpus
from worker.services import start_redis
from worker.settings import RedisSettings
from worker.store.keys import doc_key, tags_key
from worker.store.writer import TagRecord, TagWriter

REUTERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "reuters21578" / "apte90_test.jsonl"
BATCH = 256


def records(corpus: Corpus, k: int, seed: int = 0) -> list[TagRecord]:
    """One result per document: k labels of the corpus with descending scores, as the model writes them."""
    rng = random.Random(seed)
    names = sorted({label for labels in corpus.labels for label in labels})
    texts = corpus.texts or []
    return [TagRecord(doc_id, sorted(((name, rng.random()) for name in rng.sample(names, k)), key=lambda t: -t[1]),
                      text, "documents", i % 12, i, 1_700_000_000_000 + i)
            for i, (doc_id, text) in enumerate(zip(corpus.ids, texts, strict=True))]


def measure(client: redis.Redis, batch: list[TagRecord]) -> dict[str, float]:
    """Write the records; MEMORY USAGE per key kind and used_memory growth, in bytes per document."""
    settings = RedisSettings()
    writer = TagWriter(client, settings.tags_ttl_s, settings.doc_ttl_s)
    before = int(client.info("memory")["used_memory"])
    for start in range(0, len(batch), BATCH):
        writer.write(batch[start:start + BATCH], "bench")
    grown = int(client.info("memory")["used_memory"]) - before
    sizes: dict[str, list[int]] = {"tags": [], "doc": []}
    for record in batch:
        sizes["tags"].append(client.memory_usage(tags_key(record.doc_id), samples=0) or 0)
        sizes["doc"].append(client.memory_usage(doc_key(record.doc_id), samples=0) or 0)
    result = {"used_memory_per_doc": grown / len(batch),
              "text_bytes_mean": statistics.fmean(len(r.text.encode()) for r in batch)}
    for kind, values in sizes.items():
        result[f"{kind}_mean"] = statistics.fmean(values)
        result[f"{kind}_p50"] = statistics.median(values)
        result[f"{kind}_max"] = max(values)
    return result


def main() -> None:
    """Measure and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--data", type=Path, default=REUTERS, help="JSONL corpus (default: shared Reuters test set)")
    parser.add_argument("--generated", action="store_true", help="generated texts (also when --data is missing)")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    generated = args.generated or not args.data.exists()
    corpus = generate_corpus(args.docs, 20, seed=0) if generated else read_jsonl(args.data)
    corpus = corpus.subset(range(min(args.docs, len(corpus))))
    with tempfile.TemporaryDirectory() as workdir:
        service = start_redis(Path(workdir))
        try:
            client = redis.Redis.from_url(f"redis://{service.address}/0")
            version = client.info("server")["redis_version"]
            result = measure(client, records(corpus, args.k))
        finally:
            service.stop()
    source = "the generator" if generated else args.data.name
    print(f"{len(corpus)} documents from {source}, top-{args.k} tags, redis-server {version}\n")
    print("| measure | bytes |\n|---|---:|")
    for name, value in result.items():
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
