"""Tokenizer, vocabulary, idf and tf-idf rows."""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from model.errors import CheckpointError, DataError
from model.text import Featurizer, tokenize, tokenize_v1

DOCS = ["apple banana apple", "banana cherry", "apple durian", "elderberry"]


def test_tokenize_lowercases_and_splits_on_punctuation() -> None:
    assert tokenize("Hello, WORLD! it's 2026 e-mail") == ["hello", "world", "it", "2026", "mail"]


def test_unspaced_scripts_become_character_pairs_and_marks_stay_in_their_word() -> None:
    # Chinese and Japanese runs: overlapping pairs; a run of one character is itself; full-width letters and
    # half-width katakana are NFKC-normalised first.
    assert tokenize("深度学习。Ｔｏｒｃｈ 和 ｶﾀｶﾅ") == ["深度", "度学", "学习", "torch", "和", "カタ", "タカ", "カナ"]
    assert tokenize("ภาษา") == ["ภา", "าษ", "ษา"]  # Thai: pairs of code points, vowel signs included
    assert tokenize("학교에서 공부") == ["학교", "교에", "에서", "공부"]  # Korean words carry particles: pairs too
    # Devanagari: consonant + vowel sign is a word of two code points; v1 cut words at every mark
    assert tokenize("के लिए नमस्ते") == ["के", "लिए", "नमस्ते"]
    assert tokenize_v1("के लिए नमस्ते") == ["नमस"]
    assert tokenize("µl of CO₂ at 140ºF") == ["μl", "of", "co2", "at", "140of"]  # compatibility forms folded
    assert tokenize("café, Straße") == tokenize_v1("café, Straße") == ["café", "straße"]


@given(st.text())
def test_any_text_tokenises_to_non_empty_tokens_without_spaces_and_ascii_as_before(text: str) -> None:
    tokens = tokenize(text)
    assert all(token and not any(c.isspace() for c in token) for token in tokens)
    assert tokenize(unicodedata.normalize("NFKC", text)) == tokens  # normalising first changes nothing
    if text.isascii():
        assert tokens == tokenize_v1(text)


def test_a_chinese_corpus_gets_a_vocabulary_where_whole_sentences_would_each_be_seen_once() -> None:
    docs = ["今天天气很好", "天气预报说明天下雨", "今天下雨了"]
    assert Featurizer.fit_text(docs, min_df=2).tokens == ("下雨", "今天", "天下", "天气")  # df 2 each
    assert [tokenize_v1(d) for d in docs] == [[d] for d in docs]  # v1: one token per sentence, none shared


def test_a_vocabulary_saved_before_the_tokenizer_was_named_keeps_the_first_tokenizer(tmp_path: Path) -> None:
    featurizer = Featurizer.fit_text(["机器 学习", "机器 学习 好"], min_df=1)
    assert featurizer.tokenizer == "words-v2"
    featurizer.save(tmp_path / "vocab.json")
    assert Featurizer.load(tmp_path / "vocab.json").tokenizer == "words-v2"
    # a vocabulary file as saved before: no "tokenizer", and the tokens v1 fitted (the Hindi word cut at its virama)
    body = {"kind": "text", "n_features": 3, "weighting": "tfidf", "tokens": ["机器", "学习", "नमस"],
            "idf": [1.0, 1.0, 1.0], "encoder": "", "mean": None, "scale": None}
    (tmp_path / "old.json").write_text(json.dumps(body), encoding="utf-8")
    old = Featurizer.load(tmp_path / "old.json")
    assert old.tokenizer == "words-v1"
    assert old.token_ids("机器 学习 नमस्ते") == [0, 1, 2]  # featurized as it was trained (v2 would give [0, 1])
    assert Featurizer.fit_text(["नमस्ते"] * 2, min_df=1).token_ids("नमस्ते") == [0]
    (tmp_path / "new.json").write_text(json.dumps({**body, "tokenizer": "words-v9"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"unknown tokenizer 'words-v9'.*newer rankae-tagger"):
        Featurizer.load(tmp_path / "new.json")


def test_vocabulary_respects_min_df_and_orders_by_frequency() -> None:
    featurizer = Featurizer.fit_text(DOCS, min_df=2)
    assert featurizer.tokens == ("apple", "banana")  # df 2 each; ties broken alphabetically


def test_vocabulary_size_cap_keeps_the_most_frequent() -> None:
    featurizer = Featurizer.fit_text(DOCS, min_df=1, max_size=3)
    assert featurizer.tokens == ("apple", "banana", "cherry")


def test_idf_and_sublinear_tf_by_hand() -> None:
    featurizer = Featurizer.fit_text(DOCS, min_df=2)
    idf = math.log(5 / 3) + 1  # n=4 docs, df=2 for both tokens: ln((1+4)/(1+2)) + 1
    assert featurizer.idf == pytest.approx([idf, idf])
    row = featurizer.transform(["apple apple banana zzz"]).toarray()[0]
    raw = np.array([(1 + math.log(2)) * idf, 1.0 * idf])
    assert row == pytest.approx(raw / np.linalg.norm(raw))


def test_unknown_only_document_is_an_empty_row() -> None:
    featurizer = Featurizer.fit_text(DOCS, min_df=2)
    assert featurizer.transform(["nothing known here"]).nnz == 0


def test_transform_is_deterministic_and_does_not_mutate_input() -> None:
    featurizer = Featurizer.fit_text(DOCS, min_df=1)
    docs = list(DOCS)
    first, second = featurizer.transform(docs), featurizer.transform(docs)
    assert (first != second).nnz == 0 and docs == DOCS


def test_count_features_get_tfidf_and_sparse_real_values_stay_raw() -> None:
    counts = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]]))
    assert Featurizer.fit_matrix(counts).weighting == "tfidf"
    real = sp.csr_matrix(([0.25, 0.5, 0.3], ([0, 0, 1], [0, 2, 1])), shape=(4, 4))  # 3 of 16 entries: sparse
    featurizer = Featurizer.fit_matrix(real)
    assert featurizer.weighting == "raw"
    row = featurizer.transform(real[:1]).toarray()[0]
    assert row == pytest.approx(np.array([0.25, 0.0, 0.5, 0.0]) / math.hypot(0.25, 0.5))


def test_dense_real_features_get_column_z_scores_from_the_training_rows() -> None:
    # column 0: mean 1.0, std 0.5; column 1: mean 2.0, std 1.0; column 2 is constant (scale 1, so z = 0)
    dense = sp.csr_matrix(np.array([[0.5, 1.0, 0.7], [1.5, 3.0, 0.7]]))
    featurizer = Featurizer.fit_matrix(dense)
    assert featurizer.weighting == "standard"
    assert featurizer.mean == pytest.approx([1.0, 2.0, 0.7]) and featurizer.scale == pytest.approx([0.5, 1.0, 1.0])
    # z-scores (-1, -1, 0) and (1, 1, 0), each row then unit length; a new row uses the training statistics
    rows = featurizer.transform(sp.csr_matrix(np.array([[0.5, 1.0, 0.7], [2.0, 2.0, 1.7]]))).toarray()
    assert rows[0] == pytest.approx(np.array([-1.0, -1.0, 0.0]) / math.sqrt(2))
    assert rows[1] == pytest.approx(np.array([2.0, 0.0, 1.0]) / math.sqrt(5))


def test_a_constant_column_stays_zero_even_when_its_mean_is_not_exact() -> None:
    # 1,000 rows of 0.1 in column 1: float64 sums leave a spread of about 1e-17, not 0; z-scores by it would
    # make a new row's 0.2 there about 7e15 and the row one-hot. Column 0 (0, 1, 0, 1, ...): mean 0.5, std 0.5.
    values = np.column_stack([np.arange(1000) % 2, np.full(1000, 0.1)])
    featurizer = Featurizer.fit_matrix(sp.csr_matrix(values))
    assert featurizer.scale is not None and featurizer.scale[1] == 1.0
    row = featurizer.transform(sp.csr_matrix(np.array([[1.0, 0.2]]))).toarray()[0]
    # z = (1 - 0.5) / 0.5 = 1 and (0.2 - 0.1) / 1 = 0.1; unit length: (1, 0.1) / sqrt(1.01)
    assert row == pytest.approx(np.array([1.0, 0.1]) / math.sqrt(1.01), rel=1e-5)


def test_standardised_features_round_trip_and_a_file_without_their_statistics_is_refused(tmp_path: Path) -> None:
    dense = sp.csr_matrix(np.array([[0.5, 1.0], [1.5, 3.0], [0.9, 2.2]]))
    featurizer = Featurizer.fit_matrix(dense)
    featurizer.save(tmp_path / "vocab.json")
    loaded = Featurizer.load(tmp_path / "vocab.json")
    assert loaded.weighting == "standard"
    assert loaded.transform(dense).toarray() == pytest.approx(featurizer.transform(dense).toarray())
    body = json.loads((tmp_path / "vocab.json").read_text())
    (tmp_path / "vocab.json").write_text(json.dumps({**body, "scale": None}))
    with pytest.raises(CheckpointError, match="column mean and scale"):
        Featurizer.load(tmp_path / "vocab.json")


def test_feature_matrix_with_wrong_width_is_refused() -> None:
    featurizer = Featurizer.fit_matrix(sp.csr_matrix(np.eye(3)))
    with pytest.raises(DataError, match="3"):
        featurizer.transform(sp.csr_matrix(np.eye(4)))


def test_save_load_round_trip(tmp_path: Path) -> None:
    featurizer = Featurizer.fit_text(DOCS, min_df=1)
    featurizer.save(tmp_path / "vocab.json")
    loaded = Featurizer.load(tmp_path / "vocab.json")
    assert loaded.tokens == featurizer.tokens
    assert (loaded.transform(DOCS) != featurizer.transform(DOCS)).nnz == 0


def test_damaged_vocabulary_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "vocab.json").write_text('{"kind": "text"')
    with pytest.raises(CheckpointError, match=r"vocab\.json"):
        Featurizer.load(tmp_path / "vocab.json")
