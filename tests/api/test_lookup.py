"""Lookups against a real redis-server: one id, many ids, a document with its text, the recent list."""

from __future__ import annotations

from collections.abc import Callable

import redis
from fastapi.testclient import TestClient

from tests.api.support import record, write_documents
from worker.services import free_port
from worker.store.keys import doc_key

PROBLEM = "application/problem+json"
OIL = [("topic-00", 0.91), ("topic-03", 0.4)]


def test_get_tags_returns_what_the_worker_stored(api: TestClient, client: redis.Redis) -> None:
    write_documents(client, [record("doc-a", OIL, offset=17, ts=1_700_000_000_123)], model="v-7")
    reply = api.get("/v1/tags/doc-a")
    assert reply.status_code == 200
    assert reply.json() == {"id": "doc-a", "tags": [{"label": "topic-00", "score": 0.91},
                                                     {"label": "topic-03", "score": 0.4}],
                            "model": "v-7", "src": "docs/0/17", "ts": 1_700_000_000_123}


def test_ids_may_hold_slashes_and_spaces(api: TestClient, client: redis.Redis) -> None:
    write_documents(client, [record("feed/2024/a b", OIL)])
    assert api.get("/v1/tags/feed/2024/a%20b").json()["id"] == "feed/2024/a b"


def test_unknown_id_is_a_404_problem_naming_it(api: TestClient) -> None:
    reply = api.get("/v1/tags/nope-1")
    assert reply.status_code == 404 and reply.headers["content-type"] == PROBLEM
    problem = reply.json()
    assert problem["code"] == "unknown_document" and problem["status"] == 404 and problem["title"] == "Not Found"
    assert "'nope-1'" in problem["detail"] and problem["instance"] == "/v1/tags/nope-1"
    assert problem["type"] == "tag:rankae-tagger,2026:problem/unknown_document"


def test_lookup_answers_in_the_order_asked_with_null_for_unknown(api: TestClient, client: redis.Redis) -> None:
    write_documents(client, [record("a", OIL), record("b", [("topic-01", 0.7)], offset=1)])
    reply = api.post("/v1/tags:lookup", json={"ids": ["b", "zz", "a", "b"]})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [(r["id"], r["result"] and r["result"]["tags"][0]["label"]) for r in results] == [
        ("b", "topic-01"), ("zz", None), ("a", "topic-00"), ("b", "topic-01")]
    assert results[0]["result"]["model"] == "v-test"


def test_lookup_limits_its_ids(make_api: Callable[..., TestClient], client: redis.Redis) -> None:
    api = make_api(api_max_lookup_ids=3)
    assert api.post("/v1/tags:lookup", json={"ids": ["a", "b", "c"]}).status_code == 200
    reply = api.post("/v1/tags:lookup", json={"ids": ["a", "b", "c", "d"]})
    assert reply.status_code == 422 and reply.headers["content-type"] == PROBLEM
    problem = reply.json()
    assert problem["code"] == "invalid_request" and problem["errors"][0]["loc"] == "body.ids"
    assert problem["detail"].startswith("body.ids: List should have at most 3 items")
    assert api.post("/v1/tags:lookup", json={"ids": []}).status_code == 422


def test_misspelt_fields_are_refused(api: TestClient) -> None:
    reply = api.post("/v1/tags:lookup", json={"ids": ["a"], "idz": ["b"]})
    assert reply.status_code == 422 and reply.json()["errors"][0]["loc"] == "body.idz"


def test_bodies_over_the_limit_are_refused_declared_or_streamed(make_api: Callable[..., TestClient]) -> None:
    api = make_api(api_max_body_bytes=100)
    body = ('{"ids": ["' + "x" * 120 + '"]}').encode()
    declared = api.post("/v1/tags:lookup", content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["code"] == "too_large"
    assert "100 bytes" in declared.json()["detail"]
    streamed = api.post("/v1/tags:lookup", content=iter([body[:60], body[60:]]),
                        headers={"content-type": "application/json"})  # chunked: no Content-Length
    assert streamed.status_code == 413 and streamed.headers["content-type"] == PROBLEM
    assert api.post("/v1/tags:lookup", json={"ids": ["a"]}).status_code == 200


def test_document_shows_text_and_tags_and_survives_an_expired_text(api: TestClient, client: redis.Redis) -> None:
    write_documents(client, [record("d1", OIL, text="Crude oil rose.")])
    assert api.get("/v1/documents/d1").json() == {
        "id": "d1", "text": "Crude oil rose.",
        "result": {"tags": [{"label": "topic-00", "score": 0.91}, {"label": "topic-03", "score": 0.4}],
                   "model": "v-test", "src": "docs/0/0", "ts": 1_700_000_000_000}}
    client.delete(doc_key("d1"))
    assert api.get("/v1/documents/d1").json()["text"] is None
    assert api.get("/v1/documents/never").status_code == 404


def test_recent_lists_newest_first(api: TestClient, client: redis.Redis) -> None:
    write_documents(client, [record(f"r{i}", OIL, offset=i, ts=1_700_000_000_000 + i) for i in range(5)])
    documents = api.get("/v1/recent", params={"limit": 3}).json()["documents"]
    assert [(d["id"], d["ts"]) for d in documents] == [("r4", 1_700_000_000_004), ("r3", 1_700_000_000_003),
                                                       ("r2", 1_700_000_000_002)]
    assert documents[0]["result"]["tags"][0] == {"label": "topic-00", "score": 0.91}
    assert api.get("/v1/recent", params={"limit": 0}).status_code == 422


def test_redis_outage_is_a_503_problem_and_not_ready(make_api: Callable[..., TestClient]) -> None:
    api = make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    reply = api.get("/v1/tags/a")
    assert reply.status_code == 503 and reply.json()["code"] == "redis_unavailable"
    assert reply.headers["retry-after"] == "5" and "TAGGER_REDIS_URL" in reply.json()["detail"]
    assert api.get("/readyz").status_code == 503
    assert api.get("/healthz").json() == {"status": "ok"}


def test_unknown_route_and_method_are_problems(api: TestClient) -> None:
    missing = api.get("/v2/tags/a")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found" and "/docs" in missing.json()["detail"]
    wrong = api.delete("/v1/tags:lookup")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["code"] == "method_not_allowed"
