"""New labels from corrections against a real redis-server: proposal, admission by agreement or allow-list,
expiry, and the correction client's policy."""

from __future__ import annotations

import time

import pytest
import redis

from worker.learn.corrections import CorrectionClient, CorrectionRejected
from worker.learn.labels import LabelBook, Proposal
from worker.services import Service
from worker.store.keys import LABELS_ALLOWED, LABELS_PROPOSED, label_users_key
from worker.store.writer import TagRecord, TagWriter

pytestmark = pytest.mark.integration
KNOWN = {"baking", "bread"}


@pytest.fixture()
def client(redis_service: Service) -> redis.Redis:
    client = redis.Redis.from_url(f"redis://{redis_service.address}/5")
    client.flushdb()
    TagWriter(client).write([TagRecord("q1", [("bread", 0.9)], "sourdough starter", "docs", 0, 1, 1)], "v1")
    return client


def test_a_new_label_is_admitted_by_the_third_distinct_user(client: redis.Redis) -> None:
    book = LabelBook(client, min_users=3, ttl_s=3600)
    users = CorrectionClient(client, KNOWN, new_labels=book)
    for user in ("ann", "bob", "bob"):  # bob twice: still two distinct users
        users.submit("q1", ["sourdough"], [], user)
    assert book.proposals(KNOWN) == [Proposal("sourdough", 2, allowed=False, admitted=False)]
    users.submit("q1", ["sourdough", "baking"], [], "cy")
    assert book.admitted(KNOWN) == ["sourdough"]
    assert book.admitted(KNOWN | {"sourdough"}) == []  # once the model knows it, it is no longer new
    assert 0 < client.ttl(label_users_key("sourdough")) <= 3600


def test_the_allow_list_admits_at_once_and_min_users_zero_closes_new_labels(client: redis.Redis) -> None:
    book = LabelBook(client, min_users=0, ttl_s=3600)
    with pytest.raises(CorrectionRejected) as caught:
        CorrectionClient(client, KNOWN, new_labels=book).submit("q1", ["sourdough"], [], "ann")
    assert caught.value.reason == "unknown_label" and "TAGGER_LABEL_MIN_USERS=0" in str(caught.value)
    book.allow(["levain"])
    assert book.admitted(KNOWN) == ["levain"] and client.sismember(LABELS_ALLOWED, "levain")


def test_without_a_label_book_unknown_labels_are_refused_as_before(client: redis.Redis) -> None:
    with pytest.raises(CorrectionRejected) as caught:
        CorrectionClient(client, KNOWN).submit("q1", ["sourdough"], [], "ann")
    assert caught.value.reason == "unknown_label"
    assert client.zcard(LABELS_PROPOSED) == 0


def test_a_proposal_nobody_repeats_is_forgotten_after_its_ttl(client: redis.Redis) -> None:
    book = LabelBook(client, min_users=3, ttl_s=3600)
    book.propose(["fresh"], "ann")
    long_ago_ms = int((time.time() - 7200) * 1000)
    client.zadd(LABELS_PROPOSED, {"stale": long_ago_ms})  # as if proposed two hours ago
    assert [p.name for p in book.proposals(KNOWN)] == ["fresh"]
    assert client.zscore(LABELS_PROPOSED, "stale") is None
