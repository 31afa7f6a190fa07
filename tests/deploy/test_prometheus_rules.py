"""Prometheus: the scrape config and alert rules pass promtool, and every alert is unit-tested both ways."""

from __future__ import annotations

import re

from tests.deploy.conftest import (
    DEPLOY,
    ROOT,
    exported_series,
    load_yaml,
    metric_names,
    run_tool,
    tool,
)

PROMETHEUS = DEPLOY / "prometheus"
PROMTOOL_HINT = "apt-get install -y prometheus"


def _alerts() -> list[dict[str, object]]:
    return [rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]
            if "alert" in rule]


def test_promtool_check_config() -> None:
    run_tool([tool("promtool", PROMTOOL_HINT), "check", "config", str(PROMETHEUS / "prometheus.yml")])


def test_promtool_check_rules() -> None:
    run_tool([tool("promtool", PROMTOOL_HINT), "check", "rules", str(PROMETHEUS / "alerts.yml")])


def test_promtool_test_rules() -> None:
    done = run_tool([tool("promtool", PROMTOOL_HINT), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS)
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    checks = [check for case in load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
              for check in case["alert_rule_test"]]
    for alert in _alerts():
        expected = [check["exp_alerts"] for check in checks if check["alertname"] == alert["alert"]]
        assert any(expected), f"{alert['alert']}: no test expects it to fire"
        assert any(not found for found in expected), f"{alert['alert']}: no test expects it to stay quiet"


def test_alerts_read_exported_metrics() -> None:
    exported = exported_series()
    for alert in _alerts():
        unknown = metric_names(str(alert["expr"])) - exported
        assert not unknown, f"{alert['alert']} reads unexported metrics: {sorted(unknown)}"


def test_every_runbook_link_has_a_section() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in docs.splitlines() if line.startswith("#")}
    for alert in _alerts():
        url = alert["annotations"]["runbook_url"]  # type: ignore[index]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md" and anchor in anchors, f"{alert['alert']}: no section for {url}"

