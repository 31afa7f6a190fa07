"""Schemathesis fuzzes every operation of the OpenAPI document against the app on a real Redis: no 500s,
every response's status, content type, headers and body match the document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.support import TOKEN, record, write_documents
from worker.api.app import application
from worker.api.openapi import document
from worker.settings import Settings

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (in the [dev] extra)")
from hypothesis import HealthCheck, settings  # noqa: E402  (after the skip: schemathesis brings the right one)
from schemathesis.config import SchemathesisConfig  # noqa: E402

pytestmark = pytest.mark.integration

# Every default check but one: a request that fits the schema may still be refused for what it means (a
# correction of an unknown label or with nothing to change, a blank text), with a documented 422. And an
# invalid request may be refused for its size (413) before it is parsed.
CHECKS = {"positive_data_acceptance": {"enabled": False},
          "negative_data_rejection": {"expected-statuses": [  # schemathesis's defaults, and 413
              "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}}
# The document of an app with the default settings, as the served app below has them.
schema = schemathesis.openapi.from_dict(document(application(Settings())),
                                        config=SchemathesisConfig.from_dict({"checks": CHECKS}))


@pytest.fixture()
def served(make_api: Callable[..., TestClient], client: redis.Redis) -> Any:
    """The app on a real Redis with a few tagged documents, so generated ids sometimes hit."""
    api = make_api()
    write_documents(client, [record(doc_id, [("topic-00", 0.9)]) for doc_id in ("0", "a", "doc-1")])
    return api.app


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, served: Any) -> None:
    case.call_and_validate(app=served, headers={"Authorization": f"Bearer {TOKEN}"})
