"""The deployment kit in deploy/: the Kubernetes manifests against the Kubernetes schema (offline,
kubernetes-validate bundles it), and the commands the images run, run outside containers."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
KUBERNETES = "1.33"


def _containers(document: dict) -> list[dict]:
    spec = document.get("spec", {})
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return list(spec.get("template", {}).get("spec", {}).get("containers", []))


def _parses(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Exit code of `mlmedic ARGS --help`: 0 when every option and argument is one mlmedic has."""
    from mlmedic.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmedic", *args, "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    return int(done.value.code or 0)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid_kubernetes(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_kit_has_what_a_cluster_needs() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in MANIFESTS}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "CronJob",
        "Job",
    }
    serve = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    [container] = _containers(serve)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    # #22: a pinned tag pulled only when missing, and the pod says where its metrics are
    for path in MANIFESTS:
        for pod in _containers(yaml.safe_load(path.read_text())):
            assert not pod["image"].endswith(":latest") and pod["imagePullPolicy"] == "IfNotPresent"
    annotations = serve["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])


def test_the_commands_the_images_run_are_real(monkeypatch: pytest.MonkeyPatch) -> None:
    commands = []
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            commands += [c["args"] for c in _containers(document)]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    commands.append(yaml.safe_load(cmd[4:]))
    assert {c[0] for c in commands} == {"serve", "monitor", "run"}
    for args in commands:
        assert _parses([str(a) for a in args], monkeypatch) == 0, shlex.join(map(str, args))
    assert _parses(["serve", "--no-such-option"], monkeypatch) == 2  # the check can fail


def test_the_dockerfile_runs_as_a_user_with_a_healthcheck_on_a_real_route() -> None:
    from mlmedic.serving.routes import ROUTERS

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "\nUSER mlmedic\n" in dockerfile and 'ENTRYPOINT ["mlmedic"]' in dockerfile
    assert "http://127.0.0.1:8000/health" in dockerfile.split("HEALTHCHECK", 1)[1]
    gets = {
        route.path
        for router in ROUTERS
        for route in router.routes
        if "GET" in getattr(route, "methods", set())
    }
    assert {"/health", "/ready"} <= gets


def test_the_compose_file_runs_real_commands_on_the_shared_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/compose/: every mlmedic service runs a command the CLI has, against the shared
    event store and tracking server, and the example config is one mlmedic accepts."""
    from mlmedic.config import SelfHealingConfig

    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "mlflow", "serve-a", "serve-b", "monitor", "dask-worker"} <= set(services)
    mlmedic = {k: v for k, v in services.items() if v.get("image") == "mlmedic:latest"}
    commands = [v["command"] for v in mlmedic.values() if v.get("command")]
    assert {c[0] for c in commands} == {"serve", "monitor", "run"}
    for args in commands:
        assert _parses([str(a) for a in args], monkeypatch) == 0, shlex.join(map(str, args))
    for service in mlmedic.values():
        assert service["environment"]["MLMEDIC_EVENTS_URL"].startswith("postgresql://")
        assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    backend = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri postgresql+psycopg://" in backend
    example = (DEPLOY / "compose" / "self_healing_config.example.json").read_text()
    config = SelfHealingConfig.model_validate_json(example)
    assert config.serving.prediction_log_url == "file:///shared"
