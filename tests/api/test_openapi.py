"""The committed OpenAPI document matches the app's, and every error response is declared as problem+json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from worker.api.app import application
from worker.api.openapi import document, render
from worker.settings import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_document_matches_the_app() -> None:
    generated = render(document(application(Settings())))
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/openapi.json is out of date; regenerate it with: python -m worker.api.openapi docs/openapi.json")


def test_every_route_is_documented_with_problem_errors() -> None:
    spec = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert set(spec["paths"]) == {"/v1/tags/{doc_id}", "/v1/tags:lookup", "/v1/documents/{doc_id}", "/v1/recent",
                                  "/v1/suggest", "/v1/labels", "/v1/models", "/v1/corrections", "/v1/learner",
                                  "/healthz", "/readyz"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}, (method, path, status)
    assert spec["paths"]["/v1/corrections"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_a_server_publishes_its_own_limits(make_api: Callable[..., TestClient]) -> None:
    spec = make_api(api_max_lookup_ids=7, api_max_suggest_texts=3).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["LookupRequest"]["properties"]["ids"]["maxItems"] == 7
    assert schemas["SuggestRequest"]["properties"]["texts"]["maxItems"] == 3
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))["components"]["schemas"]
    assert committed["LookupRequest"]["properties"]["ids"]["maxItems"] == 1000  # the defaults
