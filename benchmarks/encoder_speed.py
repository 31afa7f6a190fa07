"""Text-encoder speed: documents per second per backend and batch size, and agreement with torch fp32.

    python -m benchmarks.encoder_speed [--encoder minilm] [--data reuters cooking] [--docs 1024]
                                       [--batches 32 256] [--device cpu|cuda] [--model DIR]

For each dataset it encodes the first ``--docs`` test documents (batched by length, as the featurizer
does) with every backend the device has: on the CPU ONNX Runtime int8 (the default) and torch fp32; on
CUDA torch in bfloat16. Each row gives docs/s after one warm-up batch, and the mean and lowest cosine of
its vectors to torch fp32's on the CPU (the exact model). With ``--model`` (a checkpoint trained with
this encoder) it also times the whole tagger, texts → top 5 tags (tf-idf, encoder, Rank-AE), on the device
per batch size, over the first dataset's texts. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.quality import DATASETS, start_benchmark
from model.encoder import ENCODERS, SentenceEncoder, load_encoder, require_encoder
from model.tagger import Tagger

log = logging.getLogger("benchmarks.encoder_speed")


def rate(encoder: SentenceEncoder, texts: list[str], batch: int) -> tuple[float, np.ndarray]:
    """(docs/s, vectors) of encoding ``texts`` in batches of ``batch``, after one warm-up batch."""
    timed = SentenceEncoder(encoder.spec, encoder.backend, batch_size=batch)
    timed.encode(texts[:batch])
    _synchronize()
    started = time.perf_counter()
    vectors = timed.encode(texts)
    _synchronize()
    return len(texts) / (time.perf_counter() - started), vectors


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tagger_rates(model: Path, texts: list[str], batches: list[int], device: str) -> list[dict[str, Any]]:
    """Docs/s of ``Tagger.predict`` (top 5) on ``device`` per batch size, after one warm-up batch each."""
    tagger = Tagger.load(model, device)
    rows = []
    for batch in batches:
        tagger.predict(texts[:batch], k=5, batch_size=batch)
        _synchronize()
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            tagger.predict(texts[start:start + batch], k=5, batch_size=batch)
        _synchronize()
        rows.append({"batch": batch, "docs": len(texts),
                     "docs_per_s": round(len(texts) / (time.perf_counter() - started), 1)})
        log.info("tagger %s", rows[-1])
    return rows


def backends(device: str) -> list[tuple[str, str]]:
    """(device, backend) pairs to measure on ``device``."""
    if device == "cuda":
        return [("cuda", "torch")]
    return [("cpu", "onnx"), ("cpu", "torch")]


def main() -> None:
    """Measure and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="minilm")
    parser.add_argument("--data", nargs="+", choices=sorted(DATASETS), default=["reuters", "cooking"])
    parser.add_argument("--docs", type=int, default=1024)
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 256])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", type=Path, help="a checkpoint trained with this encoder: time the whole tagger")
    args = parser.parse_args()
    start_benchmark()
    require_encoder(args.encoder)
    exact = load_encoder(args.encoder, "cpu", backend="torch")
    result: dict[str, Any] = {"encoder": args.encoder, "threads": torch.get_num_threads(), "rows": []}
    for name in args.data:
        texts = (DATASETS[name].load()[1].texts or [])[: args.docs]
        reference = exact.encode(texts)
        for device, backend in backends(args.device):
            encoder = load_encoder(args.encoder, device, backend=backend)
            for batch in args.batches:
                docs_per_s, vectors = rate(encoder, texts, batch)
                cosine = (vectors * reference).sum(axis=1)
                row = {"data": name, "docs": len(texts), "device": device, "backend": backend, "batch": batch,
                       "docs_per_s": round(docs_per_s, 1), "cosine_mean": round(float(cosine.mean()), 4),
                       "cosine_min": round(float(cosine.min()), 4)}
                log.info("%s", row)
                result["rows"].append(row)
    if args.model:
        texts = (DATASETS[args.data[0]].load()[1].texts or [])[: args.docs]
        result["tagger"] = tagger_rates(args.model, texts, args.batches, args.device)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
