"""Suggestions from the live model, the models listing, and the hot swap to a newly promoted version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from fastapi.testclient import TestClient

from model import checkpoint
from model.checkpoint import TrainedModel
from model.tagger import Tagger
from tests.api.support import wait_for
from worker.learn.registry import Registry

TEXTS = ["the first text about something", "a second, rather different text"]


def test_suggest_tags_texts_with_the_live_model_in_one_batch(api: TestClient, registry: Registry) -> None:
    live = Tagger.load(registry.path(registry.current()), "cpu")
    reply = api.post("/v1/suggest", json={"texts": TEXTS, "k": 3})
    assert reply.status_code == 200
    body = reply.json()
    assert body["model"] == live.version == registry.current()
    expected = live.predict(TEXTS, k=3)
    assert [[(t["label"], t["score"]) for t in r["tags"]] for r in body["results"]] == [
        [(label, score) for label, score in tags] for tags in expected]
    assert all(len(r["tags"]) == 3 for r in body["results"])


def test_suggest_limits(make_api: Callable[..., TestClient]) -> None:
    api = make_api(api_max_suggest_texts=2, max_text_bytes=20)
    assert api.post("/v1/suggest", json={"texts": ["a b", "c d"]}).status_code == 200
    cases = {"too many texts": {"texts": ["a", "b", "c"]}, "no text": {"texts": []}, "blank": {"texts": ["  "]},
             "over 20 bytes": {"texts": ["é" * 11]}, "k 0": {"texts": ["a"], "k": 0},
             "k 101": {"texts": ["a"], "k": 101}, "unknown field": {"texts": ["a"], "top": 3}}
    for case, body in cases.items():
        reply = api.post("/v1/suggest", json=body)
        assert reply.status_code == 422 and reply.json()["code"] == "invalid_request", case
    assert "20 bytes" in api.post("/v1/suggest", json={"texts": ["é" * 11]}).json()["detail"]


def _second_version(registry: Registry, tmp_path: Path) -> str:
    """Publish a copy of the live model with one bias shifted (other weights, so another version)."""
    live = checkpoint.load(registry.path(registry.current()))
    with torch.no_grad():
        next(p for name, p in live.model.named_parameters() if name.endswith("bias")).add_(0.5)
    trained = TrainedModel(live.model, live.featurizer, live.label_names, live.train_config, dict(live.metrics))
    checkpoint.save(trained, tmp_path / "v2")
    return registry.publish(tmp_path / "v2")


def test_suggestions_follow_a_promoted_version(api: TestClient, registry: Registry, tmp_path: Path) -> None:
    first = registry.current()
    second = _second_version(registry, tmp_path)
    assert second != first and registry.current() == second
    wait_for(lambda: api.get("/v1/models").json()["served"] == second, 20, "the API to load the new version")
    assert api.post("/v1/suggest", json={"texts": TEXTS}).json()["model"] == second
    models = api.get("/v1/models").json()
    assert models["live"] == second and models["registry"] is True
    assert [(v["version"], v["current"], v["served"]) for v in models["versions"]] == [
        (first, False, False), (second, True, True)]
    assert models["rounds"][0]["action"] == "promote" and models["rounds"][0]["previous"] == first


def test_models_lists_a_plain_checkpoint_as_its_one_live_version(make_api: Callable[..., TestClient],
                                                                  model_dir: Path) -> None:
    models = make_api(model_dir=str(model_dir)).get("/v1/models").json()
    meta = checkpoint.read_meta(model_dir)
    assert models["registry"] is False and models["live"] == models["served"] == meta.version
    assert models["versions"] == [{"version": meta.version, "created": meta.created, "valid_p1": meta.valid_p1,
                                   "labels": 10, "current": True, "served": True}]
    assert models["rounds"] == [] and models["rejected_in_a_row"] == 0


def test_labels_lists_the_live_models_labels(api: TestClient, registry: Registry) -> None:
    labels = api.get("/v1/labels").json()
    assert sorted(labels["labels"]) == [f"topic-{i:02d}" for i in range(10)]
    assert labels["labels"] == list(checkpoint.read_meta(registry.path(registry.current())).labels)  # id order
    assert labels["new_labels"] == [] and labels["new_labels_open"] is True and labels["min_users"] == 3

