"""Checkpoints: atomic writes, and clear refusals of damaged, mismatched or unsafe ones."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from model import checkpoint
from model.boost import LabelBoost
from model.checkpoint import TrainedModel
from model.data import Corpus
from model.errors import CheckpointError
from model.tagger import Tagger
from model.trainer import train
from tests.conftest import tiny_configs


@pytest.fixture(scope="module")
def trained(corpus_split: tuple[Corpus, Corpus]) -> TrainedModel:
    return train(corpus_split[0], *tiny_configs())


@pytest.fixture()
def saved(trained: TrainedModel, tmp_path: Path) -> Path:
    checkpoint.save(trained, tmp_path / "model")
    return tmp_path / "model"


def test_checkpoint_is_self_describing(saved: Path, trained: TrainedModel) -> None:
    config = json.loads((saved / "config.json").read_text())
    assert config["format"] == checkpoint.FORMAT
    assert config["model"]["n_labels"] == len(trained.label_names)
    assert json.loads((saved / "labels.json").read_text()) == trained.label_names
    metrics = json.loads((saved / "metrics.json").read_text())
    assert metrics["valid"]["p@1"] == pytest.approx(trained.metrics["p@1"])


def test_overwrite_is_atomic_and_leaves_no_temporary_directories(saved: Path, trained: TrainedModel) -> None:
    first = checkpoint.load(saved).version
    second = checkpoint.save(trained, saved)
    assert checkpoint.load(saved).version == second
    assert first.split("-")[1] == second.split("-")[1]  # same weights, same digest
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_a_new_labels_boost_is_saved_read_back_and_added_to_served_scores(
        trained: TrainedModel, corpus_split: tuple[Corpus, Corpus], tmp_path: Path) -> None:
    boosted_label = trained.label_names[-1]
    checkpoint.save(dataclasses.replace(trained, boost=LabelBoost((boosted_label,), 0.25)), tmp_path / "b")
    loaded = checkpoint.load(tmp_path / "b")
    assert loaded.boost == LabelBoost((boosted_label,), 0.25)
    rows = Tagger.from_trained(trained).features(corpus_split[1].inputs[:20])
    n_labels = len(trained.label_names)
    plain_ids, plain = Tagger.from_trained(trained).topk(rows, k=n_labels)
    boosted_ids, boosted = Tagger.from_checkpoint(loaded).topk(rows, k=n_labels)
    last = n_labels - 1
    for i in range(rows.shape[0]):  # every label's score, in label-id order: only the boosted one moved, by 0.25
        before = plain[i][np.argsort(plain_ids[i])]
        after = boosted[i][np.argsort(boosted_ids[i])]
        assert after[:last] == pytest.approx(before[:last], abs=1e-6)
        assert after[last] == pytest.approx(before[last] + 0.25, abs=1e-6)


def test_a_checkpoint_without_a_boost_reads_as_none_and_a_bad_one_is_named(saved: Path) -> None:
    assert checkpoint.load(saved).boost == LabelBoost()
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "boost": {"labels": "oil", "weight": 0.1}}))
    with pytest.raises(CheckpointError, match=r"config\.json: invalid boost section"):
        checkpoint.load(saved)


def test_a_ranking_from_before_the_refit_is_saved_read_back_and_checked(trained: TrainedModel,
                                                                       tmp_path: Path) -> None:
    assert checkpoint.load_ranking(tmp_path, 3) is None  # none saved: the model was not refit
    top5 = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    ranking = checkpoint.HeldoutRanking(("doc-1", "doc-7"), top5)
    checkpoint.save(dataclasses.replace(trained, before_refit=ranking), tmp_path / "r")
    loaded = checkpoint.load_ranking(tmp_path / "r", len(trained.label_names))
    assert loaded is not None and loaded.ids == ("doc-1", "doc-7") and np.array_equal(loaded.top5, top5)
    with pytest.raises(CheckpointError, match=r"expected the top 5 label ids \(of 4\) of each of 2 documents"):
        checkpoint.load_ranking(tmp_path / "r", 4)  # label id 4 is past a 4-label model
    (tmp_path / "r" / checkpoint.RANKING).write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="damaged ranking of the refit held-out set"):
        checkpoint.load_ranking(tmp_path / "r", len(trained.label_names))


def test_missing_file_is_named(saved: Path) -> None:
    (saved / "labels.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing labels\.json"):
        checkpoint.load(saved)


def test_damaged_json_is_named(saved: Path) -> None:
    (saved / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        checkpoint.load(saved)


def test_other_format_version_is_refused(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "format": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        checkpoint.load(saved)


def test_label_count_mismatch_is_refused(saved: Path) -> None:
    (saved / "labels.json").write_text(json.dumps(["only-one"]))
    with pytest.raises(CheckpointError, match="labels"):
        checkpoint.load(saved)


def test_weights_of_another_shape_are_refused(saved: Path) -> None:
    state = torch.load(saved / "weights.pt", weights_only=True)
    state["features.embedding.weight"] = torch.zeros(3, 3)
    torch.save(state, saved / "weights.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        checkpoint.load(saved)


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_pickle_payload_that_would_run_code_is_refused(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (saved / "weights.pt").write_bytes(pickle.dumps({"x": _RunsCode()}))
    with pytest.raises(CheckpointError, match="unsafe"):
        checkpoint.load(saved)
    assert "must never run" not in capsys.readouterr().out


def test_truncated_weights_are_refused(saved: Path) -> None:
    data = (saved / "weights.pt").read_bytes()
    (saved / "weights.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"weights\.pt"):
        checkpoint.load(saved)


def test_not_a_checkpoint_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        checkpoint.load(tmp_path)


def test_read_meta_describes_a_checkpoint_without_its_weights(saved: Path, trained: TrainedModel) -> None:
    version = checkpoint.load(saved).version
    (saved / "weights.pt").unlink()  # read_meta never opens the weights
    meta = checkpoint.read_meta(saved)
    assert (meta.version, meta.labels) == (version, tuple(trained.label_names))
    assert meta.valid_p1 == pytest.approx(trained.metrics["p@1"])
    assert meta.created.startswith(version[:4])


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "labels.json").unlink(), r"not a model checkpoint: missing labels\.json"),
    (lambda d: (d / "metrics.json").write_text("{"), r"metrics\.json: damaged checkpoint file"),
    (lambda d: (d / "labels.json").write_text('{"a": 1}'), r"labels\.json: expected a list of label names"),
    (lambda d: (d / "config.json").write_text("{}"), r"config\.json: no version"),
])
def test_read_meta_names_what_is_missing_or_damaged(saved: Path, damage: Callable[[Path], object],
                                                    message: str) -> None:
    damage(saved)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read_meta(saved)
