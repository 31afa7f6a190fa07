"""Kubernetes: both overlays render (kubectl kustomize, or the small renderer below where kubectl is
missing), built-in kinds pass kubernetes-validate's schemas, and the CRDs (KEDA ScaledObject, PodMonitor),
which it has no schema for, carry the fields checked here. Then the settings that must agree across files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, load_yaml
from worker.settings import ENV_PREFIX, Settings, field_names

K8S = DEPLOY / "k8s"
OVERLAYS = ["cpu", "gpu", "learning"]
WORKER, LEARNER = "rankae-tagger", "rankae-tagger-learner"  # the Deployments' names
PARTITIONS = 12  # of the input topic, as configmap.yaml and docs/operations.md state
CUSTOM_KINDS = {"ScaledObject", "PodMonitor"}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for these patches: maps recursively, named lists by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in patch.items()}}
    named = isinstance(base, list) and isinstance(patch, list) and all(
        isinstance(item, dict) and "name" in item for item in base + patch)
    if named and base:
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"]), item)
        return list(merged.values())
    return patch


def _render_here(directory: Path) -> list[dict[str, Any]]:
    """Resources, then patches (matched by kind and name), then image replacements."""
    kustomization = load_yaml(directory / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        docs += _render_here(path) if path.is_dir() else list(yaml.safe_load_all(path.read_text()))
    for entry in kustomization.get("patches", []):
        patch = load_yaml(directory / entry["path"])
        docs = [_merge(doc, patch) if (doc["kind"], doc["metadata"]["name"]) ==
                (patch["kind"], patch["metadata"]["name"]) else doc for doc in docs]
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return docs


def _render_kubectl(directory: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay's manifests: kubectl's rendering when kubectl is installed, else ours."""
    return _render_kubectl(K8S / "overlays" / overlay) or _render_here(K8S / "overlays" / overlay)


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    return found


def _container(docs: list[dict[str, Any]], name: str = WORKER) -> dict[str, Any]:
    (container,) = _one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_renderer_agrees_with_kubectl(overlay: str) -> None:
    rendered = _render_kubectl(K8S / "overlays" / overlay)
    if rendered is None:
        pytest.skip("kubectl not found (its `kubectl kustomize` is the reference); the tests use our renderer")

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(_render_here(K8S / "overlays" / overlay), key=key) == sorted(rendered, key=key)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_pass_the_kubernetes_schemas(overlay: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    docs = [doc for doc in render(overlay) if doc["kind"] not in CUSTOM_KINDS]
    assert {doc["kind"] for doc in docs} == {"ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service",
                                             "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_object_scales_the_deployment_on_lag_within_the_partitions(overlay: str) -> None:
    docs = render(overlay)
    scaled, config = _one(docs, "ScaledObject"), _one(docs, "ConfigMap")["data"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == _one(docs, "Deployment", WORKER)["metadata"]["name"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= PARTITIONS
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and int(trigger["metadata"]["lagThreshold"]) > 0
    assert trigger["metadata"]["bootstrapServers"] == config["TAGGER_KAFKA_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["consumerGroup"] == config["TAGGER_GROUP_ID"]
    assert trigger["metadata"]["topic"] == config["TAGGER_INPUT_TOPIC"]


def test_pod_monitor_scrapes_the_metrics_port_as_the_alerts_job() -> None:
    docs = render("cpu")
    monitor = _one(docs, "PodMonitor", WORKER)
    pod = _one(docs, "Deployment", WORKER)["spec"]["template"]["metadata"]["labels"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod.items()
    assert pod[monitor["spec"]["jobLabel"]] == "rankae-tagger"  # the job the alert rules select
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in _container(docs)["ports"]}
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_locked_down_probed_and_given_time_to_finish(overlay: str) -> None:
    docs = render(overlay)
    pod, container = _one(docs, "Deployment", WORKER)["spec"]["template"]["spec"], _container(docs)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = {**Settings().flat(), **{
        key.removeprefix(ENV_PREFIX).lower(): value for key, value in _one(docs, "ConfigMap")["data"].items()}}
    bound = float(config["max_wait_ms"]) / 1000 + float(config["shutdown_timeout_s"])
    assert pod["terminationGracePeriodSeconds"] > bound + 5  # + 5 s for the Redis flush and leaving the group
    assert {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]} == {
        _one(docs, "ConfigMap")["metadata"]["name"], _one(docs, "Secret")["metadata"]["name"]}


def test_configmap_and_secret_name_real_settings() -> None:
    docs = render("cpu")
    settings = {ENV_PREFIX + name.upper() for name in field_names()}
    names = set(_one(docs, "ConfigMap")["data"]) | set(_one(docs, "Secret")["stringData"])
    assert not names - settings, f"not worker settings: {sorted(names - settings)}"
    assert set(_one(docs, "Secret")["stringData"]) == {"TAGGER_REDIS_PASSWORD", "TAGGER_KAFKA_SASL_PASSWORD"}


def test_gpu_overlay_asks_for_a_gpu_and_the_cuda_image() -> None:
    container = _container(render("gpu"))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-cuda")
    assert {"name": "TAGGER_DEVICE", "value": "cuda"} in container["env"]
    cpu = _container(render("cpu"))
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and cpu["image"].endswith("-cpu")


def test_learning_overlay_runs_one_learner_writing_the_registry_the_workers_follow() -> None:
    docs = render("learning")
    learner, config = _one(docs, "Deployment", LEARNER), _one(docs, "ConfigMap")["data"]
    assert learner["spec"]["replicas"] == 1 and learner["spec"]["strategy"]["type"] == "Recreate"
    container = _container(docs, LEARNER)
    assert container["command"] == ["tagger", "learn"]
    assert container["image"] == _container(docs)["image"]  # one image, two roles
    models = {mount["name"]: mount for mount in container["volumeMounts"]}["models"]
    assert not models.get("readOnly") and config["TAGGER_MODEL_DIR"] == models["mountPath"]
    worker_models = {mount["name"]: mount for mount in _container(docs)["volumeMounts"]}["models"]
    assert worker_models["readOnly"] and worker_models["mountPath"] == config["TAGGER_MODEL_DIR"]
    claims = {volume["persistentVolumeClaim"]["claimName"] for deployment in (learner, _one(docs, "Deployment", WORKER))
              for volume in deployment["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in volume}
    assert claims == {_one(docs, "PersistentVolumeClaim")["metadata"]["name"]}
    monitor = _one(docs, "PodMonitor", LEARNER)
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= learner["spec"]["template"]["metadata"]["labels"].items()
    assert not selector <= _one(docs, "Deployment", WORKER)["spec"]["template"]["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert container["securityContext"]["readOnlyRootFilesystem"]
