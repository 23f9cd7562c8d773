"""The deployment kit in deploy/: the Kubernetes manifests against the Kubernetes schema (offline,
kubernetes-validate bundles it), and the commands the images run, run outside containers."""

from __future__ import annotations

import re
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
    from mlmedic.core.config import SelfHealingConfig

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


HELM = DEPLOY / "helm" / "mlmedic"


def _render(template: str, values: dict, release: str) -> str:
    """The subset of Helm's templating the chart uses — ``{{ .Release.Name }}``,
    ``{{ .Values.a.b }}`` and ``| quote`` — rendered here, because helm itself is not
    installable on this machine (``helm template deploy/helm/mlmedic`` renders the same)."""
    import json
    import re

    def value(match: re.Match[str]) -> str:
        path, filters = match.group(1), match.group(2) or ""
        if path == ".Release.Name":
            found: object = release
        else:
            found = values
            for key in path.removeprefix(".Values.").split("."):
                assert isinstance(found, dict) and key in found, f"no value {path}"
                found = found[key]
        text = str(found)
        return json.dumps(text) if "quote" in filters else text

    rendered = re.sub(r"\{\{\s*(\.[\w.]+)\s*(\|\s*quote\s*)?\}\}", value, template)
    assert "{{" not in rendered, rendered
    return rendered


def test_the_helm_chart_renders_to_valid_kubernetes_with_every_value_used() -> None:
    """#22: deploy/helm/mlmedic rendered with its default values: valid Kubernetes 1.33, the
    same kinds as deploy/k8s/ (the run Job aside), a pinned image pulled when missing, scrape
    annotations — and no value in values.yaml that no template reads."""
    chart = yaml.safe_load((HELM / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "mlmedic"
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    templates = sorted((HELM / "templates").glob("*.yaml"))
    kinds = set()
    for path in templates:
        document = yaml.safe_load(_render(path.read_text(), values, "shop"))
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
        kinds.add(document["kind"])
        for container in _containers(document):
            assert container["image"] == "mlmedic:0.1.0"
            assert container["imagePullPolicy"] == "IfNotPresent"
    plain = {yaml.safe_load(p.read_text())["kind"] for p in MANIFESTS}
    assert kinds == plain - {"Job"}  # deploy/k8s/'s objects; the one-off run Job aside

    def leaves(tree: dict, prefix: str = ".Values") -> list[str]:
        found = []
        for key, item in tree.items():
            path = f"{prefix}.{key}"
            found += leaves(item, path) if isinstance(item, dict) else [path]
        return found

    text = "".join(p.read_text() for p in templates)
    unused = [path for path in leaves(values) if not re.search(re.escape(path) + r"\b(?!\.)", text)]
    assert unused == []
