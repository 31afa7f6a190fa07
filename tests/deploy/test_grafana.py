"""The Grafana dashboard: every panel queries metrics the worker exports, the issue's views are all there,
and the provisioning files point where the compose stack mounts them."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.conftest import DEPLOY, DOCKER, exported_series, load_yaml, metric_names

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "rankae-tagger.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression on the dashboard."""
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_panels_query_exported_metrics() -> None:
    exported = exported_series()
    for expr in dashboard_queries():
        assert not metric_names(expr) - exported, f"unknown metric in {expr}"


def test_dashboard_shows_every_view_of_the_issue() -> None:
    used = set().union(*map(metric_names, dashboard_queries()))
    assert {"tagger_messages_total", "tagger_end_to_end_latency_seconds_bucket", "tagger_batch_size_bucket",
            "tagger_inference_seconds_bucket", "tagger_redis_write_seconds_bucket", "tagger_consumer_lag",
            "tagger_bad_messages_total", "tagger_model_info", "tagger_finetune_runs_total",
            "tagger_consume_delay_seconds_bucket"} <= used
    latency = [expr for expr in dashboard_queries() if "tagger_end_to_end_latency_seconds_bucket" in expr]
    assert {expr.split(",")[0] for expr in latency} >= {f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")}


def test_panels_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_provisioning_matches_the_compose_mounts() -> None:
    grafana = load_yaml(DOCKER / "compose.yaml")["services"]["grafana"]
    mounts = {(DOCKER / volume.split(":")[0]).resolve(): volume.split(":")[1] for volume in grafana["volumes"]}
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "rankae-tagger.yml")["providers"]
    assert mounts[DASHBOARD.parent.resolve()] == provider["options"]["path"]
    assert mounts[(GRAFANA / "provisioning").resolve()] == grafana["environment"]["GF_PATHS_PROVISIONING"]
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"


def test_the_api_has_its_panels_and_its_scrape_job() -> None:
    used = set().union(*map(metric_names, dashboard_queries()))
    assert {"tagger_api_requests_total", "tagger_api_request_seconds_bucket"} <= used
    jobs = {job["job_name"]: job for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]}
    api = load_yaml(DOCKER / "compose.yaml")["services"]["api"]
    (target,) = jobs["rankae-tagger-api"]["dns_sd_configs"]
    assert target["names"] == ["api"] and str(target["port"]) == api["environment"]["TAGGER_API_PORT"]
