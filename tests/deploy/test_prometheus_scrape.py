"""A real Prometheus server scrapes a running worker: the worker's series arrive, and every dashboard
query and alert expression evaluates without error on them."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, tool
from tests.deploy.test_grafana import dashboard_queries
from tests.integration.conftest import Stream, WorkerProcess, tagged_ids, wait_until
from worker.services import free_port

pytestmark = pytest.mark.integration


class Prometheus:
    """The Prometheus HTTP API on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (status, data or error), without raising on a bad query."""
        url = f"{self.base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                answer: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as err:  # 400 and 422 carry a JSON body naming the error; 503 while starting
            body = err.read().decode(errors="replace")
            answer = json.loads(body) if body.startswith("{") else {"status": "unavailable", "error": body}
        except OSError as err:
            answer = {"status": "unreachable", "error": str(err)}
        return answer

    def series(self, expr: str) -> list[dict[str, Any]]:
        """The result vector of a query (empty while Prometheus is starting or has no data)."""
        answer = self.query(expr)
        return answer["data"]["result"] if answer["status"] == "success" else []


@pytest.fixture()
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, Path]]:
    """A Prometheus server on a free loopback port; the test writes its scrape config first, then reloads."""
    binary = tool("prometheus", "apt-get install -y prometheus")
    port, config = free_port(), tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": []}))
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        server = Prometheus(port)
        wait_until(lambda: process.poll() is not None or server.query("up")["status"] == "success", 30,
                   f"prometheus to answer (log {tmp_path / 'prometheus.log'})")
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
        yield server, config
    finally:
        process.terminate()
        process.wait(timeout=10)


def _scrape(prometheus: Prometheus, config: Path, worker: WorkerProcess) -> None:
    """Point the scrape config at the worker (job "rankae-tagger", as the rules expect) and reload."""
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "rankae-tagger",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker.metrics_port}"]}]}]}))
    request = urllib.request.Request(f"{prometheus.base}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_prometheus_scrapes_the_worker(prometheus: tuple[Prometheus, Path], stream: Stream,
                                       start_worker: Any) -> None:
    server, config = prometheus
    worker = start_worker()
    worker.wait_ready()
    documents = stream.documents(30)
    stream.produce([value for _, value in documents])
    ids = [doc_id for doc_id, _ in documents]
    wait_until(lambda: tagged_ids(stream.redis_url, ids) == set(ids), 60, "all documents tagged")
    _scrape(server, config, worker)

    wait_until(lambda: [s["value"][1] for s in server.series('up{job="rankae-tagger"}')] == ["1"], 30,
               "up{job=\"rankae-tagger\"} == 1")
    wait_until(lambda: any(float(s["value"][1]) >= len(ids) for s in server.series(
        'tagger_messages_total{job="rankae-tagger", outcome="tagged"}')), 30, "tagged count in Prometheus")
    buckets = server.series('tagger_end_to_end_latency_seconds_bucket{job="rankae-tagger", le="+Inf"}')
    assert buckets and float(buckets[0]["value"][1]) >= len(ids)
    (model,) = server.series('tagger_model_info{job="rankae-tagger"}')
    assert model["metric"]["device"] == "cpu" and model["metric"]["version"]

    for expr in [*dashboard_queries(), *_alert_expressions()]:
        answer = server.query(expr.replace("$__rate_interval", "1m"))
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
