"""Quality/throughput frontier of the default model's embedding width C.

    python -m benchmarks.frontier [--datasets reuters cooking] [--widths 256 512 1024 2048] [--quick]

For each dataset and width, trains the default preset with ``embed_dim=C`` and reports test P@1/P@5
beside model-only prediction speed: documents/s of ``predict_topk`` at batch 256 on rows featurized
beforehand (tokenising is the worker's cost, not the model's), on the threads torch is given, with the
neighbour scores the trainer chose (the model as served). Prints a markdown table; ``--json FILE`` also
writes the rows.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import torch

from benchmarks.quality import DATASETS, benchmark_parser, default_configs, start_benchmark
from model.data import label_matrix
from model.metrics import evaluate
from model.rank_ae import predict_topk, served_rate
from model.trainer import train

log = logging.getLogger("benchmarks.frontier")


def measure(name: str, width: int, quick: bool) -> dict[str, Any]:
    """One (dataset, width) row: test P@k, training seconds, model-only docs/s at batch 256."""
    train_corpus, test = DATASETS[name].load()
    overrides: dict[str, Any] = {"embed_dim": width, **({"epochs": 2, "patience": 2} if quick else {})}
    started = time.perf_counter()
    trained = train(train_corpus, *default_configs(**overrides))
    seconds = time.perf_counter() - started
    rows = trained.featurizer.transform(test.inputs)
    ids, _ = predict_topk(trained.model, rows, 5, neighbours=trained.neighbours)
    scores = evaluate(ids, label_matrix(test.labels, trained.label_names))
    chosen = trained.neighbours
    weights = ("network alone" if chosen is None else
               f"{chosen.share:.1f} / {chosen.votes_weight:.1f} / {chosen.centroids:.1f}")
    return {"dataset": name, "width": width, "vocabulary": trained.featurizer.n_features,
            "labels": len(trained.label_names), **scores, "train_seconds": seconds, "weights": weights,
            "model_docs_per_s": served_rate(trained.model, rows, chosen), "threads": torch.get_num_threads()}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as one markdown table (metrics in %)."""
    head = ("| dataset | C | vocabulary | labels | P@1 | P@5 | train s | weights: network / votes / centroids "
            "| model-only docs/s (batch 256) |\n|---|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['dataset']} | {r['width']} | {r['vocabulary']:,} | {r['labels']} | {100 * r['p@1']:.2f} | "
        f"{100 * r['p@5']:.2f} | {r['train_seconds']:.1f} | {r['weights']} | {r['model_docs_per_s']:,.0f} |"
        for r in rows) + "\n"


def main() -> None:
    """Measure every (dataset, width) pair and print the table."""
    parser = benchmark_parser(__doc__, ("reuters", "cooking"))
    parser.add_argument("--widths", nargs="+", type=int, default=[256, 512, 1024, 2048])
    args = parser.parse_args()
    start_benchmark()
    rows = [measure(name, width, args.quick) for name in args.datasets for width in args.widths]
    print(markdown(rows), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
