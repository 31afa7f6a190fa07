"""The API's deployment: the compose service and the Kubernetes Deployment, Service, PodMonitor and PDB
(rendered as tests/deploy renders every overlay) run ``tagger api`` on one port that probes, Service and
scrape all name, with real settings and the token from a mounted secret."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import DOCKER, load_yaml
from tests.deploy.test_kubernetes import OVERLAYS, render
from worker.settings import ENV_PREFIX, ApiSettings, field_names

API = "rankae-tagger-api"
SETTINGS = {ENV_PREFIX + name.upper() for name in field_names()}


def _named(docs: list[dict[str, Any]], kind: str, name: str = API) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_deployment_runs_tagger_api_probed_on_its_port(overlay: str) -> None:
    docs = render(overlay)
    deployment = _named(docs, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["tagger", "api"]
    assert container["image"] == _named(docs, "Deployment", "rankae-tagger")["spec"]["template"]["spec"][
        "containers"][0]["image"]  # one image, another role
    (port,) = container["ports"]
    env = _env(container)
    assert not set(env) - SETTINGS and int(env["TAGGER_API_PORT"]) == port["containerPort"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["spec"]["securityContext"]["runAsNonRoot"]


def test_the_token_comes_from_a_mounted_secret_file() -> None:
    docs = render("cpu")
    spec = _named(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == "api-token")
    assert volume["secret"]["secretName"] == "rankae-tagger-api-token"
    assert _env(container)["TAGGER_API_TOKEN_FILE"] == mounts["api-token"]["mountPath"] + "/token"
    assert mounts["models"]["readOnly"] and "TAGGER_API_TOKEN" not in _env(container)


def test_service_and_pod_monitor_reach_the_api_pods_only() -> None:
    docs = render("cpu")
    pod = _named(docs, "Deployment")["spec"]["template"]
    port_name = pod["spec"]["containers"][0]["ports"][0]["name"]
    service = _named(docs, "Service")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == port_name
    monitor = _named(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert "jobLabel" not in monitor["spec"]  # its own job: the workers' alerts select job="rankae-tagger"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port_name, "/metrics")
    workers = _named(docs, "Deployment", "rankae-tagger")["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], monitor["spec"]["selector"]["matchLabels"],
                     _named(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= workers.items()


def test_compose_api_service() -> None:
    service = load_yaml(DOCKER / "compose.yaml")["services"]["api"]
    env = service["environment"]
    assert service["entrypoint"] == ["tagger", "api"]
    assert not {name for name in env if name.startswith(ENV_PREFIX)} - SETTINGS
    port = env["TAGGER_API_PORT"]
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"] and f":{port}/healthz" in " ".join(
        service["healthcheck"]["test"])
    assert "models:/models:ro" in service["volumes"] and ApiSettings().api_port == int(port)
