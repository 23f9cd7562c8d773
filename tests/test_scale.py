"""Beyond one machine, with real servers: an `mlflow server` on PostgreSQL with an artifact store
of its own, the event store on PostgreSQL, and a prediction log in a shared directory (an fsspec
URL). Two serving replicas on two project directories ("two hosts") share nothing but those:
run, gate, serve, hot swap, monitor and rollback all go through them, and each replica follows
the champion on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.serving.launch import free_port, start_server, stop_server, wait_ready
from mlmedic.store.events import EventStore
from mlmedic.store.logstore import read_predictions
from served import wait_until

# servers, supervisors and commands in their own processes: not in the fast tier
pytestmark = pytest.mark.slow

MODEL = "churn"


@pytest.fixture(scope="module")
def mlflow_on_postgres(
    postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`mlflow server --backend-store-uri postgresql+psycopg://… --artifacts-destination DIR`
    on a free loopback port (its artifacts outside every project)."""
    from pgtools import new_database

    backend = new_database(postgres_server).replace("postgresql://", "postgresql+psycopg://")
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server"),
            *("--backend-store-uri", backend),
            *("--artifacts-destination", str(artifacts)),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
        start_new_session=True,
        cwd=artifacts,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        if not wait_until(healthy, 120):
            pytest.fail("mlflow server did not start within 120 s")
        yield url
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:  # nothing of it is kept: no need to wait longer
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


def _main(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str, str]:
    """`mlmedic ARGS` in this process (the environment set by the test): code, stdout, stderr."""
    from mlmedic.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmedic", *args])
    with pytest.raises(SystemExit) as done:
        main()
    said = capsys.readouterr()
    return int(done.value.code or 0), said.out, said.err


def _model(url: str) -> int:
    with urllib.request.urlopen(url + "/model", timeout=5) as answer:
        return int(json.loads(answer.read())["version"])


def _predict(url: str, rows: pd.DataFrame) -> None:
    for record in rows.drop(columns=[TARGET, "signup_at"]).to_dict(orient="records"):
        request = urllib.request.Request(
            url + "/predict",
            data=json.dumps(record).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200


def test_two_replicas_sharing_only_the_servers_follow_the_champion_and_feed_one_monitor(
    mlflow_on_postgres: str,
    postgres_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pgtools import new_database

    events_url = new_database(postgres_server)
    shared = tmp_path / "shared-log"  # a shared directory, as an fsspec URL
    config = {
        "model_training": {"model_name": MODEL},
        "serving": {"prediction_log_url": f"file://{shared}", "registry_poll_seconds": 0.5},
    }
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    for host in hosts:
        host.mkdir()
        (host / "self_healing_config.json").write_text(json.dumps(config))
    env = dict(
        os.environ,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_TRACKING_URI=mlflow_on_postgres,
        MLMEDIC_EVENTS_URL=events_url,
    )
    for name in ("MLFLOW_TRACKING_URI", "MLMEDIC_EVENTS_URL"):  # for the commands run here
        monkeypatch.setenv(name, env[name])
    make_churn(1200, seed=81).to_csv(tmp_path / "v1.csv", index=False)
    make_churn(2400, seed=82).to_csv(tmp_path / "v2.csv", index=False)
    code, out, err = _main(
        monkeypatch, capsys, "run", str(tmp_path / "v1.csv"), "-t", TARGET, "-C", str(hosts[0])
    )
    assert code == 0, err
    assert f"in {mlflow_on_postgres}" in out and "v1 is now champion" in out
    from mlmedic.model.registry.connection import Connection

    # the quick alias read over MLflow's REST API: a set alias, and one not set (an error code)
    quick = Connection(mlflow_on_postgres, tmp_path / "state", MODEL)
    assert (quick.quick_alias("champion"), quick.quick_alias("previous")) == (1, None)

    ports = [free_port(), free_port()]
    logs = [(host / "serve.log").open("ab") for host in hosts]
    servers = [
        start_server(host, port, log, env=env)
        for host, port, log in zip(hosts, ports, logs, strict=True)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, host in zip(urls, hosts, strict=True):
            assert wait_ready(url, 120), (host / "serve.log").read_text()[-2000:]
        assert [_model(url) for url in urls] == [1, 1]  # host b loaded v1 from the server
        traffic = make_churn(80, seed=83)
        _predict(urls[0], traffic.iloc[:50])
        _predict(urls[1], traffic.iloc[50:])

        # host b is under traffic while host a deploys v2: no request fails during its swap
        answers: list[int] = []
        stop = threading.Event()
        first_row = traffic.drop(columns=[TARGET, "signup_at"]).iloc[0].items()
        record = json.dumps({k: v.item() if hasattr(v, "item") else v for k, v in first_row})
        body = record.encode()

        def load() -> None:
            while not stop.is_set():
                request = urllib.request.Request(
                    urls[1] + "/predict", data=body, headers={"content-type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        answers.append(answer.status)
                except urllib.error.HTTPError as exc:
                    answers.append(exc.code)
                except OSError:
                    answers.append(0)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        code, out, err = _main(
            monkeypatch, capsys, "run", str(tmp_path / "v2.csv"), "-t", TARGET, "-C", str(hosts[0])
        )
        deployed_at = time.monotonic()
        assert code == 0 and "v2 is now champion" in out, out + err
        # the replica on the other host swaps to the new champion on its own
        assert wait_until(lambda: _model(urls[1]) == 2, 60), (hosts[1] / "serve.log").read_text()
        swap_seconds = time.monotonic() - deployed_at
        served = len(answers)
        assert wait_until(lambda: len(answers) >= served + 20, 30)  # traffic on the new version too
        stop.set()
        loader.join(timeout=30)
        assert answers and set(answers) == {200}, sorted(set(answers))
        assert swap_seconds <= config["serving"]["registry_poll_seconds"] + 30  # type: ignore[index]
        print(f"host b served v2 {swap_seconds:.1f} s after the deploy; {len(answers)} requests")
        assert wait_until(lambda: _model(urls[0]) == 2, 60)

        # both replicas' rows, in their own part files, reach one monitor on host b
        log_url = f"file://{shared}/predictions"
        logged = 80 + len(answers)
        assert wait_until(lambda: len(read_predictions(log_url)) == logged, 30)
        parts = {p.name.split("-")[-1] for p in shared.rglob("part-*.parquet")}
        assert len(parts) >= 2  # one writer pid per replica at least
        # the scheduler on host b makes the interval's pass over both replicas' rows; the one
        # on host a finds it claimed (eight at once on one claim: tests/test_postgres.py)
        code, out, err = _main(monkeypatch, capsys, "monitor", "--once", "-C", str(hosts[1]))
        assert code == 0 and "another monitor" not in out, out + err
        code, out, err = _main(monkeypatch, capsys, "monitor", "--once", "-C", str(hosts[0]))
        assert code == 0 and "another monitor has this interval's pass" in out, out + err

        # a person on host b rolls back: the replica on host a follows
        code, out, err = _main(monkeypatch, capsys, "rollback", "-C", str(hosts[1]))
        assert code == 0, out + err
        assert wait_until(lambda: _model(urls[0]) == 1, 60), (hosts[0] / "serve.log").read_text()
        assert wait_until(lambda: _model(urls[1]) == 1, 60)
    finally:
        for server in servers:
            stop_server(server)
        for log in logs:
            log.close()
    with EventStore(events_url) as store:  # one event log for both hosts
        assert store.count("monitor") == 1
        assert store.last("monitor").details["rows"] == logged  # type: ignore[union-attr]
        assert [e.action for e in store.query(kind="deploy") if e.action == "deploy"] == [
            "deploy",
            "deploy",
        ]
        assert store.last("rollback") is not None
    code, out, err = _main(monkeypatch, capsys, "logs", "--kind", "rollback", "-C", str(hosts[0]))
    assert code == 0 and "rollback" in out, err
    code, out, err = _main(monkeypatch, capsys, "dashboard", "--json", "-C", str(hosts[0]))
    assert code == 0 and f'"rows": {logged}' in out, err
    from mlflow.tracking import MlflowClient  # a plain MLflow client sees the same champion

    client = MlflowClient(tracking_uri=mlflow_on_postgres, registry_uri=mlflow_on_postgres)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    for host in hosts:
        assert not (host / ".mlmedic" / "events.db").exists()
        assert not (host / ".mlmedic" / "mlflow.db").exists()
        assert not (host / ".mlmedic" / "predictions").exists()
