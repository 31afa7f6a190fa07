"""Readers for multi-label corpora; every malformed record raises DataError naming file and line.

Formats (``detect_format`` picks one from the file, ``--format`` overrides):

- ``jsonl``: one ``{"id", "text", "labels", "title"?}`` object per line, the canonical text format;
- ``xmlrepo``: Extreme Classification Repository text (header ``N F L``; ``l1,l2 f:v f:v`` lines,
  0-based ids, a line with no label starts with a space; dense rows of ``F`` plain values also accepted);
- ``goemotions``: ``text<TAB>label ids<TAB>comment id`` with ``labels.txt`` beside the file;
- ``stackexchange``: CSV with header ``id,title,content,tags``, HTML content, space-separated tags;
- ``table``: any other CSV or TSV whose header names its columns: a text column (``TEXT_COLUMNS``), a labels
  column (``LABEL_COLUMNS``), ``id`` and ``title`` optional (see ``read_table``).
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from model.errors import DataError

__all__ = ["FORMATS", "LABEL_COLUMNS", "TEXT_COLUMNS", "Corpus", "detect_format", "hash_split", "hash_unit",
           "join_title", "label_matrix", "parse_document", "read_corpus", "read_jsonl", "read_table", "write_jsonl"]

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Documents with their label names: raw ``texts`` or a ``features`` matrix (exactly one)."""

    ids: list[str]
    labels: list[list[str]]
    texts: list[str] | None = None
    features: sp.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def inputs(self) -> list[str] | sp.csr_matrix:
        """What a featurizer consumes: the texts, or the feature matrix."""
        return self.texts if self.texts is not None else self.features

    @classmethod
    def concat(cls, parts: Sequence[Corpus]) -> Corpus:
        """Text corpora one after the other."""
        return cls([i for p in parts for i in p.ids], [labels for p in parts for labels in p.labels],
                   texts=[t for p in parts for t in p.texts or []])

    def subset(self, rows: Sequence[int] | np.ndarray) -> Corpus:
        """The documents at ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Corpus(
            ids=[self.ids[i] for i in rows],
            labels=[self.labels[i] for i in rows],
            texts=None if self.texts is None else [self.texts[i] for i in rows],
            features=None if self.features is None else self.features[rows],
        )


def write_jsonl(corpus: Corpus, path: Path) -> None:
    """Write a text corpus in the canonical JSONL format ``{"id", "text", "labels"}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for doc_id, text, doc_labels in zip(corpus.ids, corpus.texts or [], corpus.labels, strict=True):
            out.write(json.dumps({"id": doc_id, "text": text, "labels": doc_labels}) + "\n")


def join_title(title: str | None, text: str) -> str:
    """Title and body as one text; a body that already starts with its title is kept as is."""
    if not title or text.startswith(title):
        return text
    return f"{title}\n{text}"


def label_matrix(labels: Sequence[Sequence[str]], names: Sequence[str]) -> sp.csr_matrix:
    """Binary (n_docs, n_labels) CSR of label sets; labels not in ``names`` are ignored."""
    index = {name: i for i, name in enumerate(names)}
    rows: list[int] = []
    cols: list[int] = []
    for row, doc_labels in enumerate(labels):
        ids = sorted({index[name] for name in doc_labels if name in index})
        cols.extend(ids)
        rows.extend([row] * len(ids))
    data = np.ones(len(cols), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(labels), len(names)))


def hash_split(corpus: Corpus, test_fraction: float = 0.2, seed: int = 0) -> tuple[Corpus, Corpus]:
    """Seeded split by a hash of each id: a document lands on the same side in every run."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test fraction must be in (0, 1), got {test_fraction}")
    buckets = np.array([hash_unit(f"{seed}:{doc_id}") for doc_id in corpus.ids])
    is_test = buckets >= 1.0 - test_fraction
    return corpus.subset(np.flatnonzero(~is_test)), corpus.subset(np.flatnonzero(is_test))


def hash_unit(key: str) -> float:
    """A stable pseudo-random number in [0, 1) from a string (md5), for seeded splits."""
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 2**32


# ---------------------------------------------------------------- readers


def _fail(path: Path, line: int, message: str) -> DataError:
    return DataError(f"{path}:{line}: {message}")


def _open_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from err


def read_jsonl(path: Path) -> Corpus:
    """``{"id"?, "text", "labels", "title"?}`` per line (a record without an id gets its line number); blank
    lines are skipped."""
    ids: list[str] = []
    texts: list[str] = []
    labels: list[list[str]] = []
    for number, line in _open_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise _fail(path, number, f"invalid JSON ({err.msg} at column {err.colno})") from err
        if isinstance(record, dict) and "id" not in record:
            record = {**record, "id": str(number)}
        doc_id, text, doc_labels = parse_document(record, functools.partial(_fail, path, number))
        ids.append(doc_id)
        texts.append(text)
        labels.append(doc_labels)
    return Corpus(ids, labels, texts=texts)


def parse_document(record: Any, fail: Callable[[str], DataError] = DataError) -> tuple[str, str, list[str]]:
    """Validate one decoded document object → (id, text with title, label names)."""
    if not isinstance(record, dict):
        raise fail(f"expected a JSON object, got {type(record).__name__}")
    doc_id = record.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise fail('field "id" must be a string or an integer')
    text, title = record.get("text"), record.get("title")
    if not isinstance(text, str):
        raise fail('field "text" must be a string')
    if title is not None and not isinstance(title, str):
        raise fail('field "title" must be a string when present')
    doc_labels = record.get("labels", [])
    if not isinstance(doc_labels, list) or not all(isinstance(x, str | int) for x in doc_labels):
        raise fail('field "labels" must be a list of strings')
    return str(doc_id), join_title(title, text), [str(x) for x in doc_labels]


def read_xmlrepo(path: Path) -> Corpus:
    """Extreme Classification Repository text format; label names are the 0-based ids as strings."""
    lines = _open_lines(path)
    n_docs, n_features, n_labels = _parse_header(path, next(lines, (1, ""))[1])
    rows: list[np.ndarray] = []
    labels: list[list[str]] = []
    for number, line in lines:
        if len(labels) == n_docs:
            if line.strip():
                raise _fail(path, number, f"more rows than the {n_docs} the header announces")
            continue
        doc_labels, row = _parse_xml_row(line, n_features, n_labels, functools.partial(_fail, path, number))
        labels.append(doc_labels)
        rows.append(row)
    if len(labels) != n_docs:
        raise DataError(f"{path}: header announces {n_docs} rows, file has {len(labels)}")
    return Corpus([str(i) for i in range(n_docs)], labels, features=_stack_rows(rows, n_features))


def _parse_header(path: Path, header: str) -> tuple[int, int, int]:
    parts = header.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise _fail(path, 1, f"expected a header 'N F L' (three integers), got {header[:60]!r}")
    n_docs, n_features, n_labels = (int(p) for p in parts)
    return n_docs, n_features, n_labels


def _parse_xml_row(
    line: str, n_features: int, n_labels: int, fail: Callable[[str], DataError]
) -> tuple[list[str], np.ndarray]:
    """One row → (label names, (2, nnz) array of feature ids and values)."""
    head, _, rest = line.partition(" ")
    if ":" in head:  # no label field at all: the row starts with a feature
        head, rest = "", line
    try:
        label_ids = [int(x) for x in head.split(",") if x]
    except ValueError as err:
        raise fail(f"bad label list {head[:40]!r}: expected comma-separated integers") from err
    if any(not 0 <= x < n_labels for x in label_ids):
        raise fail(f"label id out of range [0, {n_labels})")
    fields = rest.split()
    try:
        if fields and ":" not in fields[0]:
            values = np.array(fields, dtype=np.float64)
            if values.size != n_features:
                raise fail(f"dense row has {values.size} values, header says {n_features} features")
            pairs = np.vstack([np.arange(n_features), values])
        else:
            pairs = np.array([f.split(":") for f in fields], dtype=np.float64).reshape(-1, 2).T
    except ValueError as err:
        raise fail(f"bad feature field: expected 'id:value' pairs ({err})") from err
    if pairs.size and (pairs[0].min() < 0 or pairs[0].max() >= n_features):
        raise fail(f"feature id out of range [0, {n_features})")
    return [str(x) for x in label_ids], pairs


def _stack_rows(rows: list[np.ndarray], n_features: int) -> sp.csr_matrix:
    lengths = [r.shape[1] for r in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    joined = np.hstack(rows) if rows else np.zeros((2, 0))
    x = sp.csr_matrix(
        (joined[1].astype(np.float32), joined[0].astype(np.int64), indptr), shape=(len(rows), n_features)
    )
    x.sum_duplicates()
    x.eliminate_zeros()
    return x


def read_goemotions(path: Path) -> Corpus:
    """GoEmotions TSV: ``text<TAB>label ids<TAB>comment id``; names from ``labels.txt`` beside it."""
    names_path = path.parent / "labels.txt"
    if not names_path.exists():
        raise DataError(f"{path}: GoEmotions format needs {names_path} (one label name per line)")
    names = [line.strip() for _, line in _open_lines(names_path) if line.strip()]
    ids: list[str] = []
    texts: list[str] = []
    labels: list[list[str]] = []
    for number, line in _open_lines(path):
        parts = line.split("\t")
        if len(parts) != 3:
            raise _fail(path, number, f"expected 3 tab-separated fields, got {len(parts)}")
        try:
            label_ids = [int(x) for x in parts[1].split(",") if x]
        except ValueError as err:
            raise _fail(path, number, f"bad label ids {parts[1]!r}") from err
        if any(not 0 <= x < len(names) for x in label_ids):
            raise _fail(path, number, f"label id out of range [0, {len(names)})")
        texts.append(parts[0])
        labels.append([names[x] for x in label_ids])
        ids.append(parts[2])
    return Corpus(ids, labels, texts=texts)


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def strip_html(html: str) -> str:
    """Visible text of an HTML fragment, entities decoded.

    >>> strip_html("<p>Chewy &amp; soft <b>cookies</b></p>")
    'Chewy & soft cookies'
    """
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


def read_stackexchange(path: Path) -> Corpus:
    """Stack Exchange CSV (``id,title,content,tags``): title + HTML-stripped body, space-separated tags."""
    csv.field_size_limit(sys.maxsize)
    ids: list[str] = []
    texts: list[str] = []
    labels: list[list[str]] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            if header != ["id", "title", "content", "tags"]:
                raise _fail(path, 1, f"expected header id,title,content,tags, got {','.join(header)[:60]!r}")
            for record in reader:
                if len(record) != 4:
                    raise _fail(path, reader.line_num, f"expected 4 fields, got {len(record)}")
                ids.append(record[0])
                texts.append(join_title(record[1], strip_html(record[2])))
                labels.append(record[3].split())
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from err
    return Corpus(ids, labels, texts=texts)


# Column names ``read_table`` looks for (case-insensitive), the first present wins: what the text and the labels
# of a document are called in the tables people export (pandas, spreadsheets, Hugging Face datasets).
TEXT_COLUMNS = ("text", "content", "body", "document", "abstract", "description")
LABEL_COLUMNS = ("labels", "tags", "label", "categories", "topics", "subjects")
# Between the labels of one cell, the first of these found in any cell of the file; else whitespace.
LABEL_SEPARATORS = ("|", ";", ",")


def read_table(path: Path) -> Corpus:
    r"""A CSV or TSV with a header naming its columns (tab-separated when the header has a tab): the text in the
    first of ``TEXT_COLUMNS`` present (``title`` joined before it when there is one), the labels in the first of
    ``LABEL_COLUMNS``, the id in ``id`` (else the row's line number). A labels cell is a list in brackets
    (JSON ``["a", "b"]``, Python ``['a', 'b']`` as pandas writes a list column, or ``[a, b]``), or names
    separated by the first of ``LABEL_SEPARATORS`` found in the file's cells, or by whitespace where none is.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "docs.csv"
    >>> _ = path.write_text('Text,Tags\n"Crude oil rose",oil|markets\nWheat fell,[\'grain\']\n')
    >>> read_table(path).labels
    [['oil', 'markets'], ['grain']]
    """
    csv.field_size_limit(sys.maxsize)
    try:
        # utf-8-sig: spreadsheets write a byte-order mark before the header, which would rename its first column
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
            handle.seek(0)
            reader = csv.reader(handle, delimiter="\t" if "\t" in first else ",")
            columns = _table_columns(path, next(reader, []))
            rows = [(reader.line_num, record) for record in reader if record]
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise DataError(f"{path}: malformed table ({err})") from err
    width = columns["width"]
    for line, record in rows:
        if len(record) != width:
            raise _fail(path, line, f"expected {width} fields as in the header, got {len(record)}")
    cells = [record[columns["labels"]].strip() for _, record in rows]
    separator = next((sep for sep in LABEL_SEPARATORS if any(sep in c for c in cells if not _is_list(c))), None)
    log.info("%s: text from column %d, labels from column %d%s", path, columns["text"] + 1, columns["labels"] + 1,
             f", separated by {separator!r}" if separator else ", separated by whitespace")
    ids, texts, labels = [], [], []
    for (line, record), cell in zip(rows, cells, strict=True):
        ids.append(record[columns["id"]] if columns["id"] >= 0 else str(line))
        title = record[columns["title"]] if columns["title"] >= 0 else None
        texts.append(join_title(title, record[columns["text"]]))
        labels.append(_label_cell(cell, separator, functools.partial(_fail, path, line)))
    return Corpus(ids, labels, texts=texts)


def _table_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Where the text, labels, id and title are in a table's header (−1: absent), and the header's width."""
    names = [name.strip().lower() for name in header]
    found = {role: next((names.index(c) for c in choices if c in names), -1)
             for role, choices in (("text", TEXT_COLUMNS), ("labels", LABEL_COLUMNS), ("id", ("id",)),
                                   ("title", ("title",)))}
    for role, choices in (("text", TEXT_COLUMNS), ("labels", LABEL_COLUMNS)):
        if found[role] < 0:
            raise _fail(path, 1, f"no {role} column in the header {', '.join(header)[:80]!r}; name it one of "
                                 f"{', '.join(choices)}")
    return {**found, "width": len(header)}


def _is_list(cell: str) -> bool:
    return cell.startswith("[") and cell.endswith("]")


def _label_cell(cell: str, separator: str | None, fail: Callable[[str], DataError]) -> list[str]:
    """The label names of one labels cell: a JSON or Python list literal (or ``[a, b]``, names unquoted), or
    names split by ``separator`` (whitespace when None); empty names dropped."""
    if not _is_list(cell):
        return [name.strip() for name in cell.split(separator) if name.strip()]
    try:
        try:
            parsed = json.loads(cell)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(cell)  # a Python list's repr, as pandas writes one: ['a', 'b']
            except (ValueError, SyntaxError):
                parsed = cell[1:-1].split(",")  # names without quotes: [oil, gas]
    except (RecursionError, MemoryError) as err:  # "[[[[…" thousands deep: both parsers recurse
        raise fail(f"labels cell {cell[:60]!r}… is nested too deeply to be a list of label names") from err
    if not isinstance(parsed, list) or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in parsed):
        raise fail(f"labels cell {cell[:60]!r} must list label names (strings or integers)")
    return [str(x).strip() for x in parsed if str(x).strip()]


FORMATS: dict[str, Callable[[Path], Corpus]] = {
    "jsonl": read_jsonl,
    "xmlrepo": read_xmlrepo,
    "goemotions": read_goemotions,
    "stackexchange": read_stackexchange,
    "table": read_table,
}


def detect_format(path: Path) -> str:
    """Guess a file's format from its suffix and first line: a ``.csv`` or ``.tsv`` is a ``table`` unless its
    header is Stack Exchange's (``id,title,content,tags``) or, for ``.tsv``, its first line does not name both a
    text and a labels column (GoEmotions' files start with a document); a ``.txt`` with an ``N F L`` header is
    ``xmlrepo``."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    first = next(_open_lines(path), (1, ""))[1].lstrip("\ufeff")
    if suffix in (".csv", ".tsv"):  # the header parsed as CSV: the shared Stack Exchange files quote its names
        header = next(csv.reader([first], delimiter="," if suffix == ".csv" else "\t"), [])
    if suffix == ".csv":
        return "stackexchange" if [name.strip() for name in header] == ["id", "title", "content", "tags"] else "table"
    if suffix == ".tsv":  # both columns named: a GoEmotions comment may well be the one word "text"
        names = {name.strip().lower() for name in header}
        return "table" if names & set(TEXT_COLUMNS) and names & set(LABEL_COLUMNS) else "goemotions"
    words = first.split()
    if len(words) == 3 and all(p.isdigit() for p in words):
        return "xmlrepo"
    raise DataError(f"{path}: cannot tell the format; pass --format one of {sorted(FORMATS)}")


def read_corpus(path: Path | str, fmt: str | None = None) -> Corpus:
    """Read a corpus file in ``fmt`` (detected when None)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    corpus = FORMATS[fmt](path)
    if not len(corpus):
        raise DataError(f"{path}: no documents")
    return corpus
