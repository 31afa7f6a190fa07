"""Corpus readers on good and malformed input; errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.data import Corpus, detect_format, hash_split, label_matrix, read_corpus, strip_html
from model.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_reads_ids_titles_and_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"id": 7, "title": "T", "text": "body", "labels": ["x", "y"]}\n\n'
                                       '{"id": "b", "text": "T2 more", "labels": []}\n')
    corpus = read_corpus(path)
    assert corpus.ids == ["7", "b"]
    assert corpus.texts == ["T\nbody", "T2 more"]
    assert corpus.labels == [["x", "y"], []]


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "invalid JSON"),
    ('["a"]', "expected a JSON object"),
    ('{"id": true, "text": "t", "labels": []}', '"id"'),
    ('{"id": 1, "text": 5, "labels": []}', '"text"'),
    ('{"id": 1, "text": "t", "labels": "a"}', '"labels"'),
])
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "bad.jsonl", '{"id": 1, "text": "ok", "labels": []}\n' + line + "\n")
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{message}"):
        read_corpus(path)


def test_invalid_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"id": 1, "text": "\xff", "labels": []}\n')
    with pytest.raises(DataError, match="UTF-8"):
        read_corpus(path)


def test_xmlrepo_sparse_dense_and_label_less_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "x.txt", "3 3 4\n0,3 0:1 2:0.5\n 1:2\n2 1 0 3\n")
    corpus = read_corpus(path)
    assert corpus.labels == [["0", "3"], [], ["2"]]
    assert corpus.features.toarray() == pytest.approx(np.array([[1, 0, 0.5], [0, 2, 0], [1, 0, 3]]))


@pytest.mark.parametrize(("body", "message"), [
    ("2 3\n", r"x\.txt:1: expected a header"),
    ("1 3 2\n5 0:1\n", r"x\.txt:2: label id out of range"),
    ("1 3 2\n0 7:1\n", r"x\.txt:2: feature id out of range"),
    ("1 3 2\n0 a:b\n", r"x\.txt:2: bad feature field"),
    ("1 3 2\n0 1 2\n", r"x\.txt:2: dense row has 2 values"),
    ("2 3 2\n0 0:1\n", r"header announces 2 rows, file has 1"),
])
def test_xmlrepo_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_corpus(write(tmp_path / "x.txt", body), "xmlrepo")


def test_goemotions_tsv_uses_labels_file(tmp_path: Path) -> None:
    write(tmp_path / "labels.txt", "joy\nanger\nneutral\n")
    corpus = read_corpus(write(tmp_path / "t.tsv", "so happy\t0\tc1\nugh\t1,2\tc2\n"))
    assert corpus.ids == ["c1", "c2"] and corpus.labels == [["joy"], ["anger", "neutral"]]
    with pytest.raises(DataError, match=r"u\.tsv:1: label id out of range"):
        read_corpus(write(tmp_path / "u.tsv", "x\t9\tc\n"))


def test_stackexchange_csv_strips_html(tmp_path: Path) -> None:
    row = '1,"Chewy cookies?","<p>How &amp; why</p>","baking cookies"'
    path = write(tmp_path / "s.csv", f"id,title,content,tags\n{row}\n")
    corpus = read_corpus(path)
    assert corpus.texts == ["Chewy cookies?\nHow & why"] and corpus.labels == [["baking", "cookies"]]
    with pytest.raises(DataError, match=r"b\.csv:1: expected header"):
        read_corpus(write(tmp_path / "b.csv", "a,b\n1,2\n"), "stackexchange")


def test_a_table_is_read_by_its_header_names_whatever_their_case_and_order(tmp_path: Path) -> None:
    # "|" occurs in a cell, so it separates every cell's labels, and "olive oil" stays one label
    body = ('Tags,Title,ID,Body\n'
            '"olive oil|frying",Hot pans,q1,"Smoke, then ""sear"""\n'
            '"[\'baking\', \'bread\']",,q2,Rye loaves\n'
            ',Untagged,q3,nothing yet\n')
    corpus = read_corpus(write(tmp_path / "export.csv", body))
    assert corpus.ids == ["q1", "q2", "q3"]
    assert corpus.texts == ['Hot pans\nSmoke, then "sear"', "Rye loaves", "Untagged\nnothing yet"]
    assert corpus.labels == [["olive oil", "frying"], ["baking", "bread"], []]


def test_a_tsv_table_without_ids_numbers_its_rows_and_splits_labels_on_whitespace(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path / "docs.tsv", "text\tlabels\nfirst doc\ta b\n\nsecond\t[1, 2]\n"
                                                     "third\t[oil, gas]\n"))
    assert corpus.ids == ["2", "4", "5"]  # the line numbers: a blank line is skipped but counted
    assert corpus.texts == ["first doc", "second", "third"]
    assert corpus.labels == [["a", "b"], ["1", "2"], ["oil", "gas"]]


def test_a_byte_order_mark_before_the_header_does_not_rename_its_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext;x,labels\nhello,a;b\n".replace("text;x", "text").encode("utf-8"))
    assert detect_format(path) == "table"
    assert read_corpus(path).labels == [["a", "b"]]


@pytest.mark.parametrize(("body", "message"), [
    ("text,category\nhi,a\n", r"t\.csv:1: no labels column in the header 'text, category'; name it one of labels"),
    ("title,labels\nhi,a\n", r"t\.csv:1: no text column .*name it one of text, content, body"),
    ("text,labels\nhi,a\nbye,b,c\n", r"t\.csv:3: expected 2 fields as in the header, got 3"),
    ("text,labels\nhi,\"[{\"\"a\"\": 1}]\"\n", r"t\.csv:2: labels cell .* must list label names"),
    ("text,labels\nhi," + "[" * 100_000 + "]" * 100_000 + "\n", r"t\.csv:2: labels cell .* nested too deeply"),
])
def test_table_errors_name_file_line_and_what_to_do(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_corpus(write(tmp_path / "t.csv", body))


def test_a_jsonl_record_without_an_id_gets_its_line_number(tmp_path: Path) -> None:
    corpus = read_corpus(write(tmp_path / "n.jsonl", '{"id": "a", "text": "x", "labels": []}\n'
                                                    '{"text": "y", "labels": ["z"]}\n'))
    assert corpus.ids == ["a", "2"] and corpus.labels == [[], ["z"]]


def test_strip_html_keeps_text_only() -> None:
    assert strip_html("<div><p>a<br/>b</p> <code>x&lt;y</code></div>") == "ab x<y"


def test_detect_format_and_unknown_format(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "x.txt", "1 2 3\n")) == "xmlrepo"
    assert detect_format(write(tmp_path / "se.csv", "id,title,content,tags\r\n")) == "stackexchange"
    assert detect_format(write(tmp_path / "quoted.csv", '"id","title","content","tags"\n')) == "stackexchange"
    assert detect_format(write(tmp_path / "any.csv", "id,text,tags\n")) == "table"
    assert detect_format(write(tmp_path / "go.tsv", "so happy\t0\tc1\n")) == "goemotions"
    assert detect_format(write(tmp_path / "named.tsv", "Content\tTopics\n")) == "table"
    assert detect_format(write(tmp_path / "oneword.tsv", "text\t27\tc9\n")) == "goemotions"
    with pytest.raises(DataError, match="--format"):
        detect_format(write(tmp_path / "y.txt", "hello\n"))
    with pytest.raises(DataError, match="no such file"):
        read_corpus(tmp_path / "missing.jsonl")


def test_hash_split_is_seeded_and_stable() -> None:
    corpus = Corpus([f"d{i}" for i in range(1000)], [[] for _ in range(1000)], texts=[""] * 1000)
    train, test = hash_split(corpus, 0.2, seed=1)
    again_train, _ = hash_split(corpus, 0.2, seed=1)
    assert train.ids == again_train.ids
    assert 150 < len(test) < 250 and set(train.ids).isdisjoint(test.ids)
    assert hash_split(corpus, 0.2, seed=2)[1].ids != test.ids


def test_label_matrix_ignores_unknown_labels() -> None:
    y = label_matrix([["a", "zz"], ["b", "a"]], ["a", "b"])
    assert y.toarray().tolist() == [[1, 0], [1, 1]]


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")
@pytest.mark.parametrize(("path", "docs", "labels"), [
    ("bibtex/train.txt", 4880, None),
    ("reuters21578/apte90_test.jsonl", 3019, None),
    ("goemotions/dev.tsv", 5426, None),
    ("stackexchange/cooking.csv", 15404, 736),
])
def test_shared_datasets_read(path: str, docs: int, labels: int | None) -> None:
    assert detect_format(SHARED / path) == {".txt": "xmlrepo", ".jsonl": "jsonl", ".tsv": "goemotions",
                                            ".csv": "stackexchange"}[Path(path).suffix]  # HTML stripped
    corpus = read_corpus(SHARED / path)
    assert len(corpus) == docs
    if labels is not None:
        assert len({name for doc in corpus.labels for name in doc}) == labels


def test_jsonl_round_trip_of_generated_corpus(tmp_path: Path) -> None:
    from model.data import write_jsonl
    from model.synthetic import generate_corpus

    corpus = generate_corpus(50, 5, seed=3)
    write_jsonl(corpus, tmp_path / "g.jsonl")
    again = read_corpus(tmp_path / "g.jsonl")
    assert again.ids == corpus.ids and again.texts == corpus.texts and again.labels == corpus.labels
    assert json.loads((tmp_path / "g.jsonl").read_text().splitlines()[0])["id"] == "doc-00000"
