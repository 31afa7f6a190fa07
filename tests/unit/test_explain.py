"""Channel-attention explanations: the weight function on a hand-built model, and `tagger explain`."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model.config import ModelConfig
from model.errors import ModelError
from model.explain import explain, tag_attribution, token_attention
from model.rank_ae import RankAE
from model.tagger import Tagger
from model.text import Featurizer
from worker.cli import main


def _hand_built(attention: bool = True) -> RankAE:
    """C=4, r=2: A = σ(F2 relu(F1 v)) with F1 picking channels 0 and 1 and F2 all ones, so every channel
    of word j gets σ(relu(v0) + relu(v1)) and its mass is 4·σ(relu(v0) + relu(v1))."""
    model = RankAE(ModelConfig(n_features=3, n_labels=2, embed_dim=4, reduction=2, latent_dim=2,
                               label_hidden=4, attention=attention, tag_head=False))
    with torch.no_grad():
        model.features.embedding.weight.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 1.0, 0, 0], [-1.0, -1.0, 0, 0]]))
        if attention:
            attn = model.features.attention
            attn.squeeze.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
            attn.squeeze.bias.zero_()
            attn.excite.weight.fill_(1.0)
            attn.excite.bias.zero_()
    return model.eval()


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def test_token_attention_is_the_channel_sum_computed_by_hand() -> None:
    rows = sp.csr_matrix(np.array([[1.0, 1.0, 1.0], [0.0, 0.5, 0.0]], dtype=np.float32))
    (ids0, mass0), (ids1, mass1) = token_attention(_hand_built(), rows)
    assert ids0.tolist() == [0, 1, 2] and ids1.tolist() == [1]
    # word 0: v = (2, 0) → 4σ(2); word 1: v = (0, 1) → 4σ(1); word 2: relu(−1) = 0 → 4σ(0) = 2
    np.testing.assert_allclose(mass0, [4 * _sigmoid(2), 4 * _sigmoid(1), 2.0], rtol=1e-6)
    np.testing.assert_allclose(mass1, [4 * _sigmoid(0.5)], rtol=1e-6)  # tf-idf weight 0.5 scales V'
    assert np.argsort(-mass0).tolist() == [0, 1, 2]


def test_explain_names_words_by_attention_and_tags_by_score() -> None:
    featurizer = Featurizer("text", 3, "raw", ("oil", "price", "the"))
    tagger = Tagger(_hand_built(), featurizer, ["crude", "grain"])
    [result] = explain(tagger, ["the price of oil"], k=2, words=2)
    assert [w for w, _ in result.words] == ["oil", "price"]
    assert {t for t, _ in result.tags} == {"crude", "grain"}
    assert result.tags[0][1] >= result.tags[1][1]


def test_tag_attribution_is_each_words_share_of_the_top_tags_logit_computed_by_hand() -> None:
    # C=2, L=2, no attention. Embeddings e_oil = (2, 0), e_price = (0, 1), e_the = (0.5, -1); head bias
    # b = (0, 0); T2 rows: crude = (1, 0.5), grain = (-1, 1). Document "the price of oil" with weights
    # 1, 1, 1: x' = (2.5, 0) → channel 1 is inactive (relu(0) = 0), so only channel 0 counts.
    # crude's logit = 1·2.5 = 2.5 (+ bias 0) = oil 2·1 + the 0.5·1 + price 0 → oil 2.0, the 0.5, price 0.
    model = RankAE(ModelConfig(n_features=3, n_labels=2, embed_dim=2, reduction=2, latent_dim=2, label_hidden=4,
                               attention=False))
    with torch.no_grad():
        model.features.embedding.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, -1.0]]))
        model.tag_head.bias.zero_()
        model.tag_head.out.weight.copy_(torch.tensor([[1.0, 0.5], [-1.0, 1.0]]))
        model.tag_head.out.bias.zero_()
    model.config = dataclasses.replace(model.config, ae_share=0.0)
    featurizer = Featurizer("text", 3, "raw", ("oil", "price", "the"))
    tagger = Tagger(model.eval(), featurizer, ["crude", "grain"])
    [(ids, contribution)] = tag_attribution(model, sp.csr_matrix(np.ones((1, 3), dtype=np.float32)), np.array([0]))
    np.testing.assert_allclose(contribution, [2.0, 0.0, 0.5], rtol=1e-6)
    assert ids.tolist() == [0, 1, 2]
    # Through the featurizer the row is L2-normalised: each of the three known words weighs 1/√3.
    [result] = explain(tagger, ["the price of oil"], k=1, words=3)
    assert result.tags[0][0] == "crude"
    assert result.words == [("oil", round(2 / np.sqrt(3), 4)), ("the", round(0.5 / np.sqrt(3), 4)), ("price", 0.0)]


def test_a_model_without_attention_is_refused_with_a_reason() -> None:
    with pytest.raises(ModelError, match=r"without channel attention.*--attention"):
        token_attention(_hand_built(attention=False), sp.csr_matrix(np.ones((1, 3), dtype=np.float32)))


TINY = ["--embed-dim", "32", "--latent-dim", "16", "--label-hidden", "32", "--epochs", "3", "--min-df", "1",
        "--quiet"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    assert main(["generate", "--out", str(root / "data"), "--docs", "600", "--labels", "6"]) == 0
    for name, extra in (("attn", ["--attention", "--no-tag-head"]), ("plain", ["--no-attention", "--no-tag-head"]),
                        ("default", ["--epochs", "30", "--embed-dim", "64"])):
        assert main(["train", "--train", str(root / "data/train.jsonl"), "--out", str(root / name), *TINY,
                     *extra]) == 0
    return root


def test_cli_explain_prints_tags_and_words(models: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads((models / "data/test.jsonl").read_text().splitlines()[0])
    stdin = json.dumps({"id": "d1", "text": doc["text"]}) + "\n" + doc["text"] + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(["explain", "--model", str(models / "attn"), "--k", "2", "--words", "3", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["id"] for o in out] == ["d1", "2"]  # a plain-text line is named by its line number
    assert all(len(o["tags"]) == 2 and len(o["words"]) == 3 for o in out)
    masses = [m for _, m in out[0]["words"]]
    assert masses == sorted(masses, reverse=True) and all(0 < m < 32 for m in masses)
    assert out[0] == {**out[1], "id": "d1"}


def test_cli_explain_refuses_a_model_without_attention(models: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("some text\n"))
    assert main(["explain", "--model", str(models / "plain")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tagger: error: this model was trained without channel attention") and "Traceback" not in err


def test_cli_explain_of_the_default_model_ranks_topical_words_above_background_words(
        models: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Generated documents mix their labels' topic words with background words common to every label.
    # For each document, the explanation's best word must be far more specific to the top tag (share of
    # the training documents containing it that carry the tag) than its worst word.
    train_docs = [json.loads(line) for line in (models / "data/train.jsonl").read_text().splitlines()]
    test_docs = [json.loads(line) for line in (models / "data/test.jsonl").read_text().splitlines()][:20]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n"
                                                          for d in test_docs)))
    assert main(["explain", "--model", str(models / "default"), "--k", "1", "--words", "100", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    def specificity(word: str, tag: str) -> float:
        having = [d for d in train_docs if word in d["text"].split()]
        return sum(tag in d["labels"] for d in having) / max(len(having), 1)

    gaps = []
    for result in out:
        tag, words = result["tags"][0][0], [w for w, _ in result["words"]]
        contributions = [c for _, c in result["words"]]
        assert contributions == sorted(contributions, reverse=True)
        gaps.append(specificity(words[0], tag) - specificity(words[-1], tag))
    assert np.mean(gaps) > 0.5, gaps
