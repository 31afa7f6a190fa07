"""``tagger predict | explain``: tag (or explain) documents read from stdin with a checkpoint.

A bad input line is reported on stderr with its line number and column and skipped; the others are
processed, and the command ends with an error saying how many lines were bad.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import TextIO

from model.data import parse_document
from model.errors import DataError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``tagger predict`` and ``tagger explain`` to the parser."""
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


