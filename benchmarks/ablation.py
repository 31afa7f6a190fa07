"""Ablation of the default model: what each part adds, on the shared sets' test splits.

    python -m benchmarks.ablation [--datasets bibtex delicious reuters cooking] [--quick] [--json FILE]

Per dataset it trains, each once with the default training settings:
- the default model, scored at the decoder share the trainer chose on validation, at share 0 (the tag
  head alone) and at share 1 (the Rank-AE decoder alone), from the same trained weights;
- the default with Eq. 3-4's summed margin loss, and without the tag head (``tag_head=False``: Rank-AE
  with wide sum-pooled embeddings);
- the paper preset (summed margin loss, as printed), with the margin loss averaged instead, and with the
  decoder also trained on D(F(x)) (``lambda_direct=1``, not in the paper), and with BCE (BCE-AE).
A training the trainer refuses (never beating the label-frequency baseline) is reported with its error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

from benchmarks.quality import DATASETS, benchmark_parser, start_benchmark
from model.checkpoint import TrainedModel
from model.config import preset
from model.data import Corpus, label_matrix
from model.errors import ModelError
from model.metrics import evaluate
from model.rank_ae import RankAE, predict_topk
from model.trainer import train

log = logging.getLogger("benchmarks.ablation")

# (row name, preset, overrides)
VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("default", "default", {}),
    ("default, summed margin (Eq. 3-4)", "default", {"margin_reduction": "sum"}),
    ("default without the tag head", "default", {"tag_head": False}),
    ("paper preset (summed margin, Eq. 3-4)", "paper", {}),
    ("paper preset, averaged margin", "paper", {"margin_reduction": "mean"}),
    ("paper preset + D trained on D(F(x))", "paper", {"lambda_direct": 1.0}),
    ("paper preset with BCE (BCE-AE)", "paper", {"loss": "bce"}),
)


def _scores(model: RankAE, trained: TrainedModel, test: Corpus) -> dict[str, float]:
    ids, _ = predict_topk(model, trained.featurizer.transform(test.inputs), 5)
    return evaluate(ids, label_matrix(test.labels, trained.label_names))


def _at_share(trained: TrainedModel, test: Corpus, share: float) -> dict[str, float]:
    model = trained.model
    chosen = model.config
    model.config = dataclasses.replace(chosen, ae_share=share)
    try:
        return _scores(model, trained, test)
    finally:
        model.config = chosen


def run_variant(name: str, preset_name: str, overrides: dict[str, Any], train_corpus: Corpus,
                test: Corpus, quick: bool) -> list[dict[str, Any]]:
    """Rows for one variant: its test metrics (and, for a model with a tag head, each head alone)."""
    model_config, train_config = preset(preset_name, **overrides,
                                        **({"epochs": 2, "patience": 2} if quick else {}))
    started = time.perf_counter()
    try:
        trained = train(train_corpus, model_config, train_config)
    except ModelError as err:
        return [{"variant": name, "error": str(err), "train_seconds": time.perf_counter() - started}]
    seconds = time.perf_counter() - started
    best = max(trained.history, key=lambda entry: entry["valid_p@1"])
    row = {"variant": name, **_scores(trained.model, trained, test), "train_seconds": seconds,
           "ae_share": trained.model.config.ae_share, "valid_p@1": best["valid_p@1"]}
    if trained.model.tag_head is None:
        return [row]
    return [row, {"variant": f"{name}: tag head alone (share 0)", **_at_share(trained, test, 0.0)},
            {"variant": f"{name}: decoder alone (share 1)", **_at_share(trained, test, 1.0)}]


def markdown(name: str, rows: list[dict[str, Any]]) -> str:
    """One dataset's rows as a markdown table (metrics in %)."""
    lines = [f"### {name}\n", "| variant | P@1 | P@3 | P@5 | train s | decoder share | valid P@1 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | refused: {r['error'][:160]} ||| {r['train_seconds']:.1f} |||")
            continue
        extra = (f" {r['train_seconds']:.1f} | {r['ae_share']:.1f} | {100 * r['valid_p@1']:.2f} |"
                 if "train_seconds" in r else " | | |")
        lines.append(f"| {r['variant']} | {100 * r['p@1']:.2f} | {100 * r['p@3']:.2f} | {100 * r['p@5']:.2f} |"
                     + extra)
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every variant on each dataset and print the tables."""
    parser = benchmark_parser(__doc__, ("bibtex", "delicious", "reuters", "cooking"))
    parser.add_argument("--variants", nargs="+", choices=[v[0] for v in VARIANTS], help="default: all")
    args = parser.parse_args()
    start_benchmark()
    everything = {}
    for name in args.datasets:
        train_corpus, test = DATASETS[name].load()
        chosen = [v for v in VARIANTS if args.variants is None or v[0] in args.variants]
        rows = [row for variant in chosen for row in run_variant(*variant, train_corpus, test, args.quick)]
        print(markdown(name, rows), flush=True)
        everything[name] = rows
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
