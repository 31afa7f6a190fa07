"""Correction validation, the corrected label set, and fine-tuning on corrections with replay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model.data import Corpus, label_matrix
from model.finetune import FineTuneConfig, _mix, fine_tune
from model.tagger import Tagger, score_ranking
from model.trainer import train
from tests.conftest import tiny_configs
from worker.learn.corrections import Correction, CorrectionRejected, corrected_labels, parse_entry, validate

KNOWN = {"a", "b", "c"}


@pytest.mark.parametrize(("correction", "reason"), [
    (Correction("", ("a",), (), "u"), "bad_id"),
    (Correction("d", ("a",), (), ""), "bad_user"),
    (Correction("d", (), (), "u"), "empty"),
    (Correction("d", tuple(f"x{i}" for i in range(51)), (), "u"), "too_many_labels"),
    (Correction("d", ("a",), ("a",), "u"), "conflict"),
    (Correction("d", ("a", "zzz"), (), "u"), "unknown_label"),
])
def test_invalid_corrections_are_rejected_with_a_reason(correction: Correction, reason: str) -> None:
    with pytest.raises(CorrectionRejected) as caught:
        validate(correction, KNOWN)
    assert caught.value.reason == reason


def test_valid_correction_passes() -> None:
    validate(Correction("d", ("a",), ("b",), "u"), KNOWN)


def test_a_new_label_may_be_added_only_when_new_labels_are_on_and_never_removed() -> None:
    validate(Correction("d", ("a", "sourdough"), (), "u"), KNOWN, new_labels=True)
    for correction, new_labels, reason in [
        (Correction("d", ("sourdough",), (), "u"), False, "unknown_label"),
        (Correction("d", (), ("sourdough",), "u"), True, "unknown_label"),
        (Correction("d", (" padded",), (), "u"), True, "bad_new_label"),
        (Correction("d", ("tab\tinside",), (), "u"), True, "bad_new_label"),
        (Correction("d", ("x" * 101,), (), "u"), True, "bad_new_label"),
    ]:
        with pytest.raises(CorrectionRejected) as caught:
            validate(correction, KNOWN, new_labels)
        assert caught.value.reason == reason, correction


def test_corrected_set_keeps_tags_above_the_cut() -> None:
    tags = [("a", 0.8), ("b", 0.5), ("c", 0.49)]
    assert corrected_labels(tags, 0.5, add=[], remove=[]) == ["a", "b"]
    assert corrected_labels(tags, 0.5, add=["c", "a"], remove=["a"]) == ["b", "c", "a"]


def test_stream_entry_round_trip_and_malformed_entries() -> None:
    entry = {b"id": b"d1", b"add": b'["a"]', b"remove": b"[]", b"user": b"u", b"ts": b"5"}
    assert parse_entry(entry) == Correction("d1", ("a",), (), "u", 5)
    with pytest.raises(CorrectionRejected, match="malformed"):
        parse_entry({b"id": b"d1", b"add": b"not json"})


def test_mix_adds_replay_rows_at_the_ratio() -> None:
    x, y = sp.csr_matrix(np.eye(4)), sp.csr_matrix(np.eye(4))
    rx, ry = sp.csr_matrix(np.ones((10, 4))), sp.csr_matrix(np.ones((10, 4)))
    mixed_x, mixed_y = _mix(x, y, rx, ry, FineTuneConfig(replay_ratio=1.5))
    assert mixed_x.shape == (4 + 6, 4) and mixed_y.shape == (10, 4)
    assert _mix(x, y, rx, ry, FineTuneConfig(replay_ratio=0))[0] is x


def test_fine_tune_moves_a_copy_toward_the_corrections(corpus_split: tuple[Corpus, Corpus]) -> None:
    train_corpus, test = corpus_split
    trained = train(train_corpus, *tiny_configs())
    live = Tagger(trained.model, trained.featurizer, trained.label_names)
    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    # users insist that the first 40 test documents carry the rarest label
    rare = trained.label_names[-1]
    docs = test.subset(range(40))
    corrected = Corpus(docs.ids, [[rare] for _ in docs.ids], texts=docs.texts)
    replay = train_corpus.subset(range(100))
    names = live.label_names
    candidate = fine_tune(trained.model, live.features(corrected.texts), label_matrix(corrected.labels, names),
                          live.features(replay.texts), label_matrix(replay.labels, names),
                          FineTuneConfig(epochs=5, lr=5e-3))
    assert all(torch.equal(v, trained.model.state_dict()[k]) for k, v in before.items())  # live untouched
    tuned = Tagger(candidate, live.featurizer, live.label_names)
    rank = lambda t: np.mean([[n for n, _ in doc].index(rare) if rare in [n for n, _ in doc] else 12  # noqa: E731
                              for doc in t.predict(corrected.texts, k=12)])
    assert rank(tuned) < rank(live)


def test_a_refit_model_keeps_its_split_as_the_refit_held_out_set(corpus_split: tuple[Corpus, Corpus]) -> None:
    from model.config import TrainConfig
    from model.trainer import feedback_corpora

    plain = feedback_corpora(corpus_split[0], TrainConfig(valid_fraction=0.1, min_valid=0, refit=False))
    assert set(plain) == {"heldout", "replay"}
    assert len(plain["heldout"]) == round(0.1 * len(corpus_split[0]))
    assert set(plain["heldout"].ids).isdisjoint(plain["replay"].ids)
    one_split = TrainConfig(min_valid=0)  # the default refits
    refit = feedback_corpora(corpus_split[0], one_split)
    assert set(refit) == {"refit_heldout", "replay"} and refit["refit_heldout"].ids == plain["heldout"].ids
    # 730 documents: the floor holds out 100 of them, and the default then refits on every one
    assert len(corpus_split[0]) == 730
    small = feedback_corpora(corpus_split[0], TrainConfig())
    assert set(small) == {"refit_heldout", "replay"} and len(small["refit_heldout"]) == 100
    kept = feedback_corpora(corpus_split[0], TrainConfig(refit=False))
    assert len(kept["heldout"]) == 100 and len(kept["replay"]) == 630
    # cross-validated: the same split (within the first of the three folds)
    folded = feedback_corpora(corpus_split[0], TrainConfig(cv_min_docs=0))
    assert folded["refit_heldout"].ids == small["refit_heldout"].ids and folded["replay"].ids == small["replay"].ids


def test_a_rounds_candidate_is_refit_only_where_the_validation_floor_raised_its_split(
        corpus_split: tuple[Corpus, Corpus], tmp_path: Path) -> None:
    from model import checkpoint
    from worker.learn import rounds
    from worker.settings import LearnerSettings

    model_config, tiny = tiny_configs()
    checkpoint.save(train(corpus_split[0], model_config, dataclasses.replace(tiny, refit=True)), tmp_path / "live")
    live = checkpoint.load(tmp_path / "live")
    replay, examples = corpus_split[0].subset(range(400)), corpus_split[0].subset(range(400, 500))
    floored = dataclasses.replace(live, train_config=dataclasses.replace(live.train_config, min_valid=100))
    small = rounds.candidate(floored, replay, examples, live.label_names, LearnerSettings(round_budget_s=0.0))
    assert small.n_train == 500 and small.train_config.refit  # 100 of 500 held out (not 50), then given back
    assert small.before_refit is None  # it is judged on the live model's held-out set, not on its own split
    plain = rounds.candidate(live, replay, examples, live.label_names, LearnerSettings(round_budget_s=0.0))
    assert plain.n_train == 450 and not plain.train_config.refit  # min_valid 0: a tenth held out, kept out


def test_a_refit_model_is_judged_on_its_held_out_set_by_its_settings_trained_without_it(
        corpus_split: tuple[Corpus, Corpus], tmp_path: Path) -> None:
    from model import checkpoint
    from model.trainer import feedback_corpora
    from worker.learn.rounds import unrefit

    model_config, tiny = tiny_configs()
    config = dataclasses.replace(tiny, min_valid=100, refit=True)  # 730 documents: 100 held out, then refit on all
    corpora = feedback_corpora(corpus_split[0], config)
    live = train(corpus_split[0], model_config, config)
    checkpoint.save(live, tmp_path / "live", corpora)
    before = unrefit(checkpoint.load(tmp_path / "live"), corpora["replay"], corpora["refit_heldout"])
    assert (live.n_train, before.n_train) == (730, 630)
    assert before.label_names == live.label_names
    # validated on the held-out set (its accepted figures are the ones it scores there), which it never trained on
    assert Tagger.from_trained(before).evaluate(corpora["refit_heldout"])["p@1"] == pytest.approx(before.metrics["p@1"])
    assert set(corpora["refit_heldout"].ids).isdisjoint(corpora["replay"].ids)
    # The live model also saved how it ranked the held-out set before its refit, in its own label ids (the run
    # before the refit numbered the labels by their frequency in 630 documents): scored there, that ranking gives
    # the validation figures the model was accepted with, which the learner can use without training again
    ranking = checkpoint.load_ranking(tmp_path / "live", len(live.label_names))
    assert ranking is not None and ranking.ids == tuple(corpora["refit_heldout"].ids)
    scored = score_ranking(ranking.top5, corpora["refit_heldout"], live.label_names).metrics
    assert (scored["p@1"], scored["ndcg@5"]) == pytest.approx((live.metrics["p@1"], live.metrics["ndcg@5"]))
