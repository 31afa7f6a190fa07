"""``tagger train | evaluate | generate``: training and judging models."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.config import ENCODER_USES, HEADS, LABEL_INITS, LOSSES, PRESETS, ModelConfig, TrainConfig, preset
from model.data import FORMATS, hash_split, read_corpus, write_jsonl
from model.encoder import ENCODERS
from worker.cli.running import epoch_progress

__all__ = ["register"]

log = logging.getLogger(__name__)
_MODEL = ModelConfig()
_TRAIN = TrainConfig()


def register(commands: argparse._SubParsersAction) -> None:
    """Add the model commands to the ``tagger`` parser."""
    train = commands.add_parser("train", help="train a model and save a checkpoint")
    train.add_argument("--train", type=Path, required=True, help="training corpus file")
    train.add_argument("--test", type=Path, help="test corpus, evaluated after training (never used to tune)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    train.add_argument("--format", choices=sorted(FORMATS), help="input format (detected when omitted)")
    train.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    train.add_argument("--quiet", action="store_true", help="no progress bar (on a terminal) or epoch lines (in a log)")
    _add_model_options(train)
    _add_train_options(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="P@k, nDCG@k and PSP@k of a model on a labelled file")
    evaluate.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    evaluate.add_argument("--test", type=Path, required=True, help="labelled corpus file")
    evaluate.add_argument("--format", choices=sorted(FORMATS), help="input format (detected when omitted)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--device", help="torch device")
    evaluate.set_defaults(handler=cmd_evaluate)

    generate = commands.add_parser("generate", help="write a generated multi-label corpus (train/test JSONL)")
    generate.add_argument("--out", type=Path, required=True, help="directory for train.jsonl and test.jsonl")
    generate.add_argument("--docs", type=int, default=3000, help="documents in all (default 3000)")
    generate.add_argument("--labels", type=int, default=20, help="labels (default 20)")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(handler=cmd_generate)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    # Every model and training flag defaults to "not given", so it overrides the chosen preset's value
    # only when given; the help shows the default preset's value.
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="named configuration the flags below override: 'default' (the product's model) "
                             "or 'paper' (the paper's §3.1 setting)")
    group = parser.add_argument_group("model (paper §2)")
    option = _optional(group, _MODEL)
    option("--head", choices=HEADS)
    option("--loss", choices=LOSSES, help="margin (Rank-AE) or bce (BCE-AE)")
    group.add_argument("--no-attention", dest="attention", action="store_false", default=argparse.SUPPRESS,
                       help="the 'No attn' ablation (the default preset has no attention)")
    group.add_argument("--attention", dest="attention", action="store_true", default=argparse.SUPPRESS,
                       help="SE channel attention (the paper preset has it)")
    option("--label-init", choices=LABEL_INITS)
    option("--pooling", choices=("mean", "sum"))
    option("--embed-dim", type=int, help="C")
    option("--latent-dim", type=int, help="h")
    option("--label-hidden", type=int)
    option("--reduction", type=int, help="r")
    option("--margin", type=float, help="m")
    option("--margin-reduction", choices=("mean", "sum"), help="L_P/L_N averaged (mean) or summed (Eq. 3-4)")
    option("--lambda", dest="lambda_ae", type=float, help="λ")
    option("--lambda-direct", type=float, help="weight of the reconstruction loss on D(F(x)) (not in the paper)")
    group.add_argument("--tag-head", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help=f"the tag head beside the decoder (default preset: {_MODEL.tag_head})")
    option("--tag-head-loss", choices=LOSSES)
    option("--dropout", type=float)
    option("--word-dropout", type=float)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    option = _optional(group, _TRAIN)
    option("--epochs", type=int)
    option("--batch-size", type=int)
    option("--lr", type=float)
    option("--weight-decay", type=float)
    option("--patience", type=int)
    option("--schedule", choices=("constant", "cosine"))
    option("--seed", type=int)
    option("--valid-fraction", type=float)
    option("--time-budget-s", type=float, help="stop training before an epoch would end past this many seconds "
           "(0: no limit); the best epoch so far is kept, and the refit is left out where it would end past it")
    option("--cv-folds", type=int, help="choose the epoch count and blends of a small corpus by this many folds of "
           "cross-validation (0: one validation split)")
    option("--cv-min-docs", type=int, help="the fewest documents a corpus may have to be cross-validated")
    option("--cv-max-docs", type=int, help="the most documents a corpus may have to be cross-validated")
    option("--min-valid", type=int, help="hold out at least this many documents for validation (up to 30%% of a "
           "small corpus; 0: valid-fraction alone)")
    group.add_argument("--refit", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help="retrain on all training documents for the epoch count chosen on validation, so "
                            f"that the split is not lost to the model (default preset: {_TRAIN.refit})")
    group.add_argument("--neighbours", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help="blend the votes of each document's nearest training documents and its cosine to "
                            "each label's centroid into its tag scores where that raises validation P@1 "
                            "(default preset: on)")
    option("--min-docs-per-s", type=float, help="leave the neighbour votes out when the model served with them "
           "would tag fewer documents/s (model-only, batch 256; counted from the model's sizes as a 2-core "
           "reference machine's rate, so every machine makes the same model; 0: no floor)")
    option("--noise", help="training-label noise, e.g. missing:0.3 or flip:0.3")
    option("--min-df", type=int)
    option("--max-vocab", type=int)
    option("--encoder", choices=sorted(ENCODERS), help="a pretrained sentence encoder beside the tf-idf features "
           "(raw text only; needs pip install 'rankae-tagger[encoder]'; docs/results.md has its cost)")
    option("--encoder-epochs", type=int, help="fine-tune the encoder on the training labels for up to this many "
           "epochs first (the epoch best on validation kept; slow on a CPU: about 7 minutes per 7,000 "
           "documents per epoch on 2 cores)")
    option("--encoder-use", choices=ENCODER_USES, help="with --encoder: its vector read by the network beside the "
           "words (network), a logistic layer over it served beside the tf-idf network (layer), or both trained and "
           "the better on validation kept, or the two served together where validation prefers that (choose)")


def _optional(group: argparse._ArgumentGroup, defaults: Any) -> Callable[..., None]:
    """add_argument for a config field: absent unless given, its help showing the default preset's value."""
    def option(flag: str, help: str = "", **kwargs: Any) -> None:
        field = kwargs.get("dest", flag.lstrip("-").replace("-", "_"))
        shown = f"default preset: {getattr(defaults, field)!r}"
        group.add_argument(flag, default=argparse.SUPPRESS, help=f"{help} ({shown})" if help else shown,
                           **kwargs)
    return option


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configuration the preset and the flags given describe."""
    fields = {*ModelConfig.__dataclass_fields__, *TrainConfig.__dataclass_fields__} - {"n_features", "n_labels",
                                                                                      "extra"}
    return preset(args.preset, **{name: getattr(args, name) for name in fields if hasattr(args, name)})


def cmd_train(args: argparse.Namespace) -> int:
    """Train, save the checkpoint, and report validation (and test) metrics."""
    from model import checkpoint
    from model.tagger import Tagger
    from model.trainer import feedback_corpora, train

    model_config, train_config = configs_from_args(args)
    corpus = read_corpus(args.train, args.format)
    test = read_corpus(args.test, args.format) if args.test else None
    trained = train(corpus, model_config, train_config, device=args.device, progress=epoch_progress(args.quiet))
    version = checkpoint.save(trained, args.out, feedback_corpora(corpus, trained.train_config))
    log.info("saved %s (version %s); validation %s", args.out, version, _percent(trained.metrics))
    if test is not None:
        print(_table(Tagger.load(args.out, args.device).evaluate(test)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print a model's metrics on a labelled file, as a table or one JSON object."""
    from model.tagger import Tagger

    scores = Tagger.load(args.model, args.device).evaluate(read_corpus(args.test, args.format))
    print(json.dumps(scores, sort_keys=True) if args.json else _table(scores))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a generated corpus, split 80/20 into train.jsonl and test.jsonl."""
    from model.synthetic import generate_corpus

    train, test = hash_split(generate_corpus(args.docs, args.labels, args.seed), 0.2, args.seed)
    write_jsonl(train, args.out / "train.jsonl")
    write_jsonl(test, args.out / "test.jsonl")
    log.info("wrote %d training and %d test documents to %s", len(train), len(test), args.out)
    return 0


def _percent(scores: dict[str, float]) -> str:
    return " ".join(f"{k}={v * 100:.2f}" for k, v in scores.items() if "@" in k)


def _table(scores: dict[str, float]) -> str:
    rows = [f"documents  {int(scores.get('n_docs', 0))}"]
    for metric in ("p", "ndcg", "psp"):
        cells = [f"{metric}@{k}={scores[f'{metric}@{k}'] * 100:6.2f}" for k in (1, 3, 5) if f"{metric}@{k}" in scores]
        if cells:
            rows.append("  ".join(cells))
    return "\n".join(rows)
