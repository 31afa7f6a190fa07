"""API fixtures: a real redis-server, a tiny trained model published into a registry, and the app bound to
them (served in-process by FastAPI's TestClient, or as a real ``tagger api`` process where it matters)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.support import TOKEN
from tests.support.fixtures import empty_database, tiny_model
from worker.api.app import create_app
from worker.api.state import ApiState
from worker.learn.registry import Registry
from worker.services import Service, ServiceError, start_redis
from worker.settings import Settings


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A private redis-server for the API tests."""
    try:
        service = start_redis(tmp_path_factory.mktemp("redis"))
    except ServiceError as err:
        pytest.skip(str(err))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained on a generated 10-label corpus (labels topic-00 ... topic-09)."""
    return tiny_model(tmp_path_factory.mktemp("model"), docs=600, epochs=4)


@pytest.fixture()
def registry(model_dir: Path, tmp_path: Path) -> Registry:
    """A fresh registry whose live version is the tiny model."""
    registry = Registry(tmp_path / "registry")
    registry.publish(model_dir)
    return registry


@pytest.fixture()
def client(redis_service: Service) -> Iterator[redis.Redis]:
    """A Redis client on an emptied database."""
    with empty_database(redis_service.address, 0) as connection:
        yield connection


@pytest.fixture()
def settings_for(redis_service: Service, registry: Registry) -> Callable[..., Settings]:
    """Settings of an API on the test's Redis and registry, with the token; keyword fields override."""

    def build(**fields: object) -> Settings:
        base: dict[str, object] = {"redis_url": f"redis://{redis_service.address}/0",
                                   "model_dir": str(registry.root), "device": "cpu", "api_token": TOKEN}
        return Settings.of(**{**base, **fields})

    return build


@pytest.fixture()
def make_api(settings_for: Callable[..., Settings], client: redis.Redis) -> Iterator[Callable[..., TestClient]]:
    """Build an app with settings overrides and serve it in-process; every one is closed after the test."""
    opened: list[TestClient] = []

    def build(**fields: object) -> TestClient:
        settings = settings_for(**fields)
        test_client = TestClient(create_app(settings, ApiState.start(settings)), raise_server_exceptions=False)
        opened.append(test_client.__enter__())
        return test_client

    yield build
    for test_client in opened:
        test_client.__exit__(None, None, None)


@pytest.fixture()
def api(make_api: Callable[..., TestClient]) -> TestClient:
    """The API with default limits and the token set."""
    return make_api()
