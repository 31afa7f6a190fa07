"""Corrections through the API: the token, the same validation and rate limit as ``tagger correct``, new
labels, and the learner consuming what the API queued."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.support import auth, record, write_documents
from worker.learn.corrections import CorrectionRejected, correction_client
from worker.learn.learner import Learner
from worker.learn.registry import Registry
from worker.settings import Settings
from worker.store.keys import CORRECTIONS, EXAMPLES, REJECTED

OIL = [("topic-00", 0.91), ("topic-03", 0.4)]


@pytest.fixture()
def tagged(client: redis.Redis) -> str:
    """One tagged document, 'doc-a'."""
    write_documents(client, [record("doc-a", OIL, text="crude oil prices rose")])
    return "doc-a"


def test_a_correction_is_queued_in_the_stream(api: TestClient, client: redis.Redis, tagged: str) -> None:
    reply = api.post("/v1/corrections", headers=auth(),
                     json={"id": tagged, "add": ["topic-05"], "remove": ["topic-03"], "user": "alice"})
    assert reply.status_code == 202
    entry = reply.json()["entry"]
    assert reply.json()["id"] == tagged
    ((stored_id, fields),) = client.xrange(CORRECTIONS)
    assert stored_id.decode() == entry
    assert {k.decode(): v.decode() for k, v in fields.items() if k != b"ts"} == {
        "id": "doc-a", "add": '["topic-05"]', "remove": '["topic-03"]', "user": "alice"}


def test_writes_need_the_token(api: TestClient, tagged: str) -> None:
    body = {"id": tagged, "add": ["topic-05"], "user": "alice"}
    missing = api.post("/v1/corrections", json=body)
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = api.post("/v1/corrections", json=body, headers=auth("guess"))
    assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]


def test_without_a_token_writes_are_disabled_and_reads_still_work(make_api: Callable[..., TestClient],
                                                                   tagged: str) -> None:
    api = make_api(api_token="")
    reply = api.post("/v1/corrections", json={"id": tagged, "add": ["topic-05"], "user": "a"}, headers=auth())
    assert reply.status_code == 403 and reply.json()["code"] == "writes_disabled"
    assert "TAGGER_API_TOKEN" in reply.json()["detail"]
    assert api.get(f"/v1/tags/{tagged}").status_code == 200


BAD = {
    "unknown_document": ({"id": "never-tagged", "add": ["topic-01"]}, 404),
    "unknown_label": ({"id": "doc-a", "remove": ["no-such-label"]}, 422),
    "empty": ({"id": "doc-a"}, 422),
    "conflict": ({"id": "doc-a", "add": ["topic-01"], "remove": ["topic-01"]}, 422),
    "bad_new_label": ({"id": "doc-a", "add": [" padded "]}, 422),
    "bad_id": ({"id": "", "add": ["topic-01"]}, 422),
    "too_many_labels": ({"id": "doc-a", "add": [f"topic-0{i % 10}" for i in range(51)]}, 422),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_refusals_match_tagger_correct(reason: str, api: TestClient, settings_for: Callable[..., Settings],
                                       client: redis.Redis, tagged: str) -> None:
    body, status = BAD[reason]
    fields = {"add": [], "remove": [], "user": "bob", **body}
    with pytest.raises(CorrectionRejected) as cli:  # the client `tagger correct` uses, on the same input
        correction_client(settings_for()).submit(fields["id"], fields["add"], fields["remove"], fields["user"])
    reply = api.post("/v1/corrections", headers=auth(), json=fields)
    assert cli.value.reason == reason
    assert (reply.status_code, reply.json()["code"], reply.json()["detail"]) == (status, reason, str(cli.value))
    assert client.hget(REJECTED, reason) == b"2"  # counted once by each, in the same place


def test_the_rate_limit_is_per_user_and_shared_with_the_cli(make_api: Callable[..., TestClient],
                                                             settings_for: Callable[..., Settings],
                                                             tagged: str) -> None:
    api = make_api(corrections_per_user_per_minute=2)
    body = {"id": tagged, "add": ["topic-05"], "user": "carol"}
    correction_client(settings_for(corrections_per_user_per_minute=2)).submit(tagged, ["topic-05"], [], "carol")
    assert api.post("/v1/corrections", headers=auth(), json=body).status_code == 202
    limited = api.post("/v1/corrections", headers=auth(), json=body)
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "60"
    assert api.post("/v1/corrections", headers=auth(), json={**body, "user": "dave"}).status_code == 202


def test_new_labels_are_proposed_then_admitted_by_three_users(api: TestClient, tagged: str) -> None:
    for n, user in enumerate(["u1", "u2", "u3"], start=1):
        body = {"id": tagged, "add": ["sourdough"], "user": user}
        assert api.post("/v1/corrections", headers=auth(), json=body).status_code == 202
        (label,) = api.get("/v1/labels").json()["new_labels"]
        assert label == {"name": "sourdough", "users": n, "allowed": False, "admitted": n == 3}


def test_the_learner_turns_an_api_correction_into_an_example(api: TestClient, client: redis.Redis,
                                                             settings_for: Callable[..., Settings],
                                                             tagged: str) -> None:
    learner = Learner(settings_for())  # creates its consumer group, as `tagger learn` does at start
    body = {"id": tagged, "add": ["topic-05"], "remove": [], "user": "erin"}
    assert api.post("/v1/corrections", headers=auth(), json=body).status_code == 202
    queue = api.get("/v1/learner").json()["queue"]
    assert (queue["stream_length"], queue["waiting"], queue["pending"], queue["examples"]) == (1, 1, 0, 0)
    assert learner.ingest() == 1
    # stored tags scoring at least the cut (0.5): topic-00; minus nothing; plus topic-05
    example = json.loads(client.hget(EXAMPLES, tagged))
    assert example["labels"] == ["topic-00", "topic-05"] and example["user"] == "erin"
    queue = api.get("/v1/learner").json()["queue"]
    assert (queue["waiting"], queue["pending"], queue["examples"], queue["learner_seen"]) == (0, 0, 1, True)


def test_the_learners_verdicts_show_in_models_and_learner(api: TestClient, registry: Registry) -> None:
    live = registry.current()
    registry.record("rejected", live, reason="held-out P@1 dropped", live={"heldout_p@1": 0.6},
                    candidate={"heldout_p@1": 0.4})  # as the learner records a rejected round
    (latest, *_) = api.get("/v1/models").json()["rounds"]
    assert (latest["action"], latest["version"], latest["reason"]) == ("rejected", live, "held-out P@1 dropped")
    assert latest["live"] == {"heldout_p@1": 0.6} and latest["candidate"] == {"heldout_p@1": 0.4}
    learner = api.get("/v1/learner").json()
    assert learner["rejected_in_a_row"] == 1 and learner["queue"]["learner_seen"] is False
