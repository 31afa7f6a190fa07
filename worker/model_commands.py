"""``tagger train | evaluate | predict | explain | generate``: the model commands of the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from model.config import HEADS, LABEL_INITS, LOSSES, PRESETS, ModelConfig, TrainConfig, preset
from model.data import FORMATS, Corpus, hash_split, parse_document, read_corpus, write_jsonl
from model.errors import DataError

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
    train.add_argument("--quiet", action="store_true", help="no progress bar")
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

    predict = commands.add_parser("predict", help='JSONL {"id","text"} on stdin → {"id","tags"} on stdout')
    predict.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    predict.add_argument("--k", type=int, default=5, help="tags per document (default 5)")
    predict.add_argument("--batch-size", type=int, default=256, help="documents per model call")
    predict.add_argument("--device", help="torch device")
    predict.set_defaults(handler=cmd_predict)

    explain = commands.add_parser("explain", help="top tags and the words that made the top tag (each word's "
                                  "contribution to its logit; attention mass for an attention-only model), for "
                                  "documents on stdin (JSONL like predict, or one plain text per line)")
    explain.add_argument("--model", type=Path, required=True,
                         help="checkpoint directory (with a tag head, the default, or with attention)")
    explain.add_argument("--k", type=int, default=5, help="tags per document (default 5)")
    explain.add_argument("--words", type=int, default=10, help="words per document (default 10)")
    explain.add_argument("--json", action="store_true", help='one {"id","tags","words"} JSON object per line')
    explain.add_argument("--device", help="torch device")
    explain.set_defaults(handler=cmd_explain)

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
    group.add_argument("--refit", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help="retrain on all training documents for the epoch count chosen on validation")
    option("--noise", help="training-label noise, e.g. missing:0.3 or flip:0.3")
    option("--min-df", type=int)
    option("--max-vocab", type=int)


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
    from model.trainer import train

    model_config, train_config = configs_from_args(args)
    corpus = read_corpus(args.train, args.format)
    test = read_corpus(args.test, args.format) if args.test else None
    trained = train(corpus, model_config, train_config, device=args.device, progress=not args.quiet)
    version = checkpoint.save(trained, args.out, feedback_corpora(corpus, train_config))
    log.info("saved %s (version %s); validation %s", args.out, version, _percent(trained.metrics))
    if test is not None:
        print(_table(Tagger.load(args.out, args.device).evaluate(test)))
    return 0


def feedback_corpora(corpus: Corpus, config: TrainConfig, replay_size: int = 5000) -> dict[str, Corpus]:
    """What the corrections learner needs, saved with a text model: the validation split as the fixed
    held-out set, and a seeded sample of the training documents to replay while fine-tuning.

    A refit model has trained on every document, so it gets no held-out set: judging candidates on
    memorised documents would punish any change (measured: held-out P@1 84 against 48 on unseen ones).
    """
    from model.trainer import split_validation

    if corpus.texts is None:
        return {}
    fit, heldout = split_validation(corpus, config.valid_fraction, config.seed)
    picks = np.random.default_rng(config.seed).permutation(len(fit))[:replay_size]
    corpora = {"replay": fit.subset(np.sort(picks))}
    if config.refit:
        log.warning("--refit trains on every document: no clean held-out set is saved, so the corrections "
                    "learner cannot judge candidates for this model; train without --refit to use it")
    else:
        corpora["heldout"] = heldout
    return corpora


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print a model's metrics on a labelled file, as a table or one JSON object."""
    from model.tagger import Tagger

    scores = Tagger.load(args.model, args.device).evaluate(read_corpus(args.test, args.format))
    print(json.dumps(scores, sort_keys=True) if args.json else _table(scores))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Tag JSONL documents from stdin; a bad line is reported on stderr and skipped."""
    from model.tagger import Tagger

    tagger = Tagger.load(args.model, args.device)

    def write(good: list[tuple[str, str]]) -> None:
        tags = tagger.predict([text for _, text in good], args.k)
        for (doc_id, _), doc_tags in zip(good, tags, strict=True):
            sys.stdout.write(json.dumps({"id": doc_id, "tags": [[n, s] for n, s in doc_tags]}) + "\n")

    _each_batch(_stdin_documents(sys.stdin), args.batch_size, write, "tagged")
    return 0


def _each_batch(documents: Iterator[tuple[str | None, str]], size: int,
                write: Callable[[list[tuple[str, str]]], None], done: str) -> None:
    """Hand the good documents to ``write`` in batches; DataError at the end if any line was bad."""
    bad = 0
    for chunk in _chunks(documents, size):
        good = [(doc_id, text) for doc_id, text in chunk if doc_id is not None]
        bad += len(chunk) - len(good)
        if good:
            write(good)
        sys.stdout.flush()
    if bad:
        raise DataError(f"{bad} input line(s) were not valid documents (details above); the rest were {done}")


def _stdin_documents(stream: TextIO) -> Iterator[tuple[str | None, str]]:
    """(id, text) per non-blank line; (None, "") for a bad line, after reporting it on stderr."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield _json_document(number, line)


def _json_document(number: int, line: str) -> tuple[str | None, str]:
    try:
        doc_id, text, _ = parse_document(json.loads(line.rstrip("\r\n")))
    except json.JSONDecodeError as err:  # its own message counts lines and characters of what it parsed
        print(f"tagger: stdin:{number}: invalid JSON: {err.msg} at column {err.colno}", file=sys.stderr)
        return None, ""
    except DataError as err:
        print(f"tagger: stdin:{number}: {err}", file=sys.stderr)
        return None, ""
    return doc_id, text


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain documents from stdin: each one's top tags and its words by contribution (or attention mass)."""
    from model.explain import explain, require_explainable
    from model.tagger import Tagger

    tagger = Tagger.load(args.model, args.device)
    require_explainable(tagger.model)

    def write(good: list[tuple[str, str]]) -> None:
        results = explain(tagger, [text for _, text in good], args.k, args.words)
        for (doc_id, _), result in zip(good, results, strict=True):
            sys.stdout.write(_explanation_text(doc_id, result.tags, result.words, args.json))

    _each_batch(_stdin_texts(sys.stdin), 64, write, "explained")
    return 0


def _stdin_texts(stream: TextIO) -> Iterator[tuple[str | None, str]]:
    """Like _stdin_documents, but a line that is not a JSON object is a plain text, its id its line number."""
    for number, line in enumerate(stream, start=1):
        if line.lstrip().startswith("{"):
            yield _json_document(number, line)
        elif line.strip():
            yield str(number), line.strip()


def _explanation_text(doc_id: str, tags: list[tuple[str, float]], words: list[tuple[str, float]],
                      as_json: bool) -> str:
    if as_json:
        return json.dumps({"id": doc_id, "tags": [list(t) for t in tags], "words": [list(w) for w in words]}) + "\n"
    return (f"{doc_id}\n  tags:  " + "  ".join(f"{name} {score:.3f}" for name, score in tags)
            + "\n  words: " + "  ".join(f"{word} {mass:.2f}" for word, mass in words) + "\n")


def _chunks(items: Iterator[tuple[str | None, str]], size: int) -> Iterator[list[tuple[str | None, str]]]:
    while chunk := list(islice(items, size)):
        yield chunk


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
