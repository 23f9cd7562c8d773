"""Security: no pickle unless opted in, trusted skops types from mlmedic's own tags, corrupt
copies caught by hash, API token, safe request ids, http(s)-only recover, killed hung commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlmedic.core.errors import ConfigError, RegistryError
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.local import cache_path
from mlmedic.model.project import Project
from mlmedic.model.source import ModelSource
from mlmedic.serving.app import build
from mlmedic.serving.recover import run_command

CLI = [sys.executable, "-m", "mlmedic"]
PAYLOAD = '''
import os


class Evil:
    """Pickles to a call of os.system: loading it runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, train_isolated) -> Path:  # type: ignore[no-untyped-def]
    """One trained project for the module; each test gets a copy of it."""
    return train_isolated(tmp_path_factory.mktemp("secure-template") / "secure", 81)  # type: ignore[no-any-return]


@pytest.fixture
def project(trained: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of the trained project: its own registry database, events and caches (the model
    files it registered stay in the template's artifact store, which no test changes)."""
    root = tmp_path / "secure"
    shutil.copytree(trained, root)
    opened = Project(root)
    yield opened
    opened.close()


def _record() -> dict[str, object]:
    row = make_churn(1, seed=3).drop(columns=[TARGET, "signup_at"]).iloc[0].to_dict()
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


@pytest.mark.slow
def test_a_pickled_champion_is_refused_and_its_code_never_runs(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.sklearn

    (tmp_path / "evil_payload.py").write_text(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path))
    from evil_payload import Evil  # type: ignore[import-not-found]

    marker = tmp_path / "pwned"
    registry = project.registry
    _ = registry.client
    registry.connection.activate()
    with mlflow.start_run(experiment_id=registry.connection.experiment_id()):
        mlflow.sklearn.log_model(
            Evil(str(marker)),
            name="model",
            serialization_format="cloudpickle",
            registered_model_name=registry.model_name,
        )
    registry.client.set_registered_model_alias(registry.model_name, "champion", "2")
    marker.unlink(missing_ok=True)  # MLflow itself may load what it logs
    with pytest.raises(RegistryError, match="execute the code"):
        registry.load_model(2)
    with pytest.raises(RegistryError, match="execute the code"):
        registry.export(2, tmp_path / "export")
    # `mlmedic run` stops with that one line (exit 2) before training, the champion unchanged
    with pytest.raises(RegistryError, match="execute the code"):
        run_pipeline(project, make_churn(300, seed=82), target=TARGET)
    assert registry.champion().version == 2  # type: ignore[union-attr]
    assert not marker.exists()


def test_skops_types_come_from_mlmedics_tag_not_from_the_artifact(project: Project) -> None:
    registry = project.registry
    trusted = registry.trusted_types(1)
    assert trusted and all("." in name for name in trusted)
    registry.client.delete_model_version_tag(
        registry.model_name, "1", "mlmedic.skops_trusted_types"
    )
    with pytest.raises(RegistryError, match="not registered by mlmedic"):
        registry.load_model(1)


def test_a_corrupt_cached_copy_is_caught_by_its_hash_and_replaced(project: Project) -> None:
    cached = cache_path(project.state_dir, 1) / "model" / "model.skops"
    good = cached.read_bytes()
    cached.write_bytes(good[:-10] + b"0123456789")  # same size, different bytes
    source = ModelSource(
        project.state_dir, model_name=project.registry.model_name, events=project.events
    )
    loaded = source.load_version(1)
    assert loaded.source == "registry"
    assert cached.read_bytes() == good
    repair = project.events.last("recovery")
    assert repair is not None and "sha256" in repair.message


GUARDED_GETS = ("/model", "/openapi.json", "/docs", "/redoc", "/dashboard", "/metrics")


def test_api_token_guards_every_path_but_the_probes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 item 5: with MLMEDIC_API_TOKEN set, only /health and /ready answer without it — the
    model's features and classes (/model, the OpenAPI document and its pages) included."""
    monkeypatch.setenv("MLMEDIC_API_TOKEN", "tok")
    monkeypatch.setenv("MLMEDIC_METRICS_TOKEN", "scrape")
    right, wrong = {"authorization": "Bearer tok"}, {"authorization": "Bearer nope"}
    with TestClient(build(project.root)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        for path in GUARDED_GETS:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "MLMEDIC_API_TOKEN" in refused.json()["detail"]
            assert client.get(path, headers=wrong).status_code == 403, path
            assert client.get(path, headers=right).status_code == 200, path
        assert client.post("/predict", json=_record()).status_code == 401
        assert client.post("/feedback", json={"request_id": "a", "label": 1}).status_code == 401
        assert client.post("/predict", json=_record(), headers=wrong).status_code == 403
        assert client.post("/predict", json=_record(), headers=right).status_code == 200
        scraper = {"authorization": "Bearer scrape"}  # the metrics token opens /metrics only
        assert client.get("/metrics", headers=scraper).status_code == 200
        assert client.get("/model", headers=scraper).status_code == 403
        assert client.post("/predict", json=_record(), headers=scraper).status_code == 403
        document = client.get("/openapi.json", headers=right).json()
        operations = document["paths"]
        assert "security" not in operations["/health"]["get"]
        assert operations["/model"]["get"]["security"] == [{"bearer": []}]
        assert "401" in operations["/model"]["get"]["responses"]
        metrics = client.get("/metrics", headers=right).text
        assert 'status="401"' in metrics and 'status="403"' in metrics  # refusals are counted


def test_the_open_paths_are_a_setting(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLMEDIC_API_TOKEN", "tok")
    config = project.root / "self_healing_config.json"
    config.write_text(json.dumps({"serving": {"open_paths": ["/health", "/ready", "/model"]}}))
    with TestClient(build(project.root)) as client:
        assert client.get("/model").status_code == 200
        assert client.get("/dashboard").status_code == 401
    config.write_text(json.dumps({"serving": {"open_paths": ["/admin/reload"]}}))
    with pytest.raises(ConfigError, match="open_paths"):
        build(project.root)


def test_request_ids_are_kept_only_from_a_safe_charset(project: Project) -> None:
    cases = {"abc-1.2:x_Y": True, "<script>": False, "a" * 129: False, "a b": False}
    with TestClient(build(project.root)) as client:
        for header, kept in cases.items():
            body = client.post("/predict", json=_record(), headers={"x-request-id": header}).json()
            assert (body["request_id"] == header) is kept, header
            if not kept:
                assert len(body["request_id"]) == 32


def test_binding_beyond_loopback_is_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlmedic.serving.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    monkeypatch.delenv("MLMEDIC_API_TOKEN", raising=False)
    code, error = _main(monkeypatch, capsys, "serve", "--host", "0.0.0.0", "-C", str(tmp_path))
    assert "without credentials" in error  # then: no champion yet, exit 2
    assert code == 2


@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url", "ftp://host/x"])
def test_recover_takes_http_urls_only(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, error = _main(
        monkeypatch, capsys, "recover", "--url", url, "--command", "true", "-C", str(tmp_path)
    )
    assert code == 2, error
    assert "http://" in error and "Traceback" not in error
    assert not (tmp_path / ".mlmedic").exists()


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):  # type: ignore[no-untyped-def]
    """The real entry point, in this process: (exit code, stderr)."""
    from mlmedic.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmedic", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return done.value.code, capsys.readouterr().err


@pytest.mark.slow
def test_a_hanging_restart_command_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    output = run_command(f"sleep 600 & echo $! > {pidfile}; sleep 600", timeout=1.0)
    assert time.monotonic() - started < 30
    assert "killed after" in output
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the restart command's child was left running")
