"""The rest of the app: CORS off by default, the page and its files, /metrics, the token settings, and
``tagger api`` as a process (starts, answers, stops on SIGTERM; a bad token file is a one-line error)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from model.errors import ConfigError
from tests.api.support import ROOT, ApiProcess
from worker.api.problems import _location
from worker.learn.registry import Registry
from worker.services import Service
from worker.settings import Settings, load

ORIGIN = {"Origin": "https://apps.example.com"}


def test_cors_is_off_unless_origins_are_configured(make_api: Callable[..., TestClient]) -> None:
    closed = make_api().get("/healthz", headers=ORIGIN)
    assert "access-control-allow-origin" not in closed.headers
    opened = make_api(api_cors_origins="https://apps.example.com, https://other.example.com")
    assert opened.get("/healthz", headers=ORIGIN).headers["access-control-allow-origin"] == ORIGIN["Origin"]
    preflight = opened.options("/v1/tags:lookup", headers={**ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
    stranger = opened.get("/healthz", headers={"Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in stranger.headers


def test_the_page_and_its_files_are_served_with_a_strict_policy(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="static/review.js"' in page.text and "http" not in page.text.split("<body>")[0].replace(
        'name="viewport"', "")  # nothing loaded from another host
    assert api.get("/static/review.js").headers["content-type"].startswith(("text/javascript",
                                                                            "application/javascript"))
    assert api.get("/static/review.css").status_code == 200


def test_metrics_count_requests_by_route_template(api: TestClient) -> None:
    api.get("/v1/tags/some-id")
    api.get("/v1/tags/other-id")
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}
    counted = {(s.labels["route"], s.labels["status"]): s.value for s in families["tagger_api_requests"].samples
               if s.name == "tagger_api_requests_total"}
    assert counted[("/v1/tags/{doc_id:path}", "404")] == 2
    (info,) = families["tagger_api_model_info"].samples
    assert info.labels["device"] == "cpu" and info.value == 1


def test_problem_locations_read_like_paths() -> None:
    assert _location(("body", "ids", 3)) == "body.ids[3]"
    assert _location(("query", "limit")) == "query.limit"
    assert _location(()) == "request"


def test_token_from_a_file_wins_and_a_missing_one_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    both = {"TAGGER_API_TOKEN": "env", "TAGGER_API_TOKEN_FILE": str(tmp_path / "token")}
    assert load(both).api.token() == "from-file"
    assert load({"TAGGER_API_TOKEN": "env"}).api.token() == "env"
    assert Settings().api.token() is None and Settings().api.cors_origins() == []
    with pytest.raises(ConfigError, match="TAGGER_API_TOKEN_FILE: cannot read"):
        load({"TAGGER_API_TOKEN_FILE": str(tmp_path / "absent")}).api.token()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load({"TAGGER_API_TOKEN_FILE": str(tmp_path / "empty")}).api.token()
    assert "env" not in repr(load({"TAGGER_API_TOKEN": "env"}))


def test_help_lists_the_api_settings() -> None:
    done = subprocess.run([sys.executable, "-m", "worker.cli", "api", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    for flag in ("--api-port", "--api-token-file", "--api-max-body-bytes", "--api-cors-origins", "--redis-url",
                 "--model-dir", "--corrections-per-user-per-minute"):
        assert flag in done.stdout


@pytest.mark.integration
def test_tagger_api_serves_and_stops_on_sigterm(redis_service: Service, registry: Registry, tmp_path: Path) -> None:
    process = ApiProcess({"TAGGER_REDIS_URL": f"redis://{redis_service.address}/0",
                          "TAGGER_MODEL_DIR": str(registry.root), "TAGGER_DEVICE": "cpu"}, tmp_path / "api.log")
    process.wait_ready()
    assert process.status("/v1/models") == 200 and process.status("/v1/tags/none") == 404
    assert process.stop() == 0
    assert "corrections will be refused" in process.log_path.read_text()  # no token: said at start


def test_an_unreadable_token_file_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "worker.cli", "api", "--api-token-file", str(tmp_path / "nope")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("tagger: error: TAGGER_API_TOKEN_FILE: cannot read")
