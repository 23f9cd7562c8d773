"""The supervised server as real processes: kill -9, canary failure, hot swap under load."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.faults import write_fragile_trainer
from mlmedic.model.project import Project
from mlmedic.serving.launch import free_port, start_server, stop_server, worker_pids
from mlmedic.store.events import EventStore
from served import get_json as _get
from served import post_json as _post
from served import wait_ready as _wait_ready
from served import wait_until

# servers, supervisors and commands in their own processes: not in the fast tier
pytestmark = pytest.mark.slow

RECORD = {
    k: (v.item() if hasattr(v, "item") else v)
    for k, v in make_churn(1, seed=3).drop(columns=[TARGET, "signup_at"]).iloc[0].items()
}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("supervised") / "store"
    root.mkdir()
    project = Project(root)
    assert run_pipeline(project, make_churn(1500, seed=31), target=TARGET).deployed
    assert run_pipeline(project, make_churn(1500, seed=32), target=TARGET).deployed
    project.close()
    return root


@pytest.fixture
def server(two_versions: Path):  # type: ignore[no-untyped-def]
    """`mlmedic serve` on a free loopback port; stopped (with its workers) afterwards."""
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLMEDIC_ADMIN_TOKEN="t0ken")
    config = (
        json.loads((two_versions / "self_healing_config.json").read_text())
        if (two_versions / "self_healing_config.json").exists()
        else {}
    )
    config.setdefault("service_recovery", {})["health_check_interval_seconds"] = 0.5
    (two_versions / "self_healing_config.json").write_text(json.dumps(config))
    log = two_versions / f"serve-{port}.log"
    output = log.open("ab")
    process = start_server(two_versions, port, output, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)
        deadline = time.monotonic() + 30  # and the supervisor has seen it ready too
        while "serving" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield url, process
    finally:
        stop_server(process)
        output.close()
        assert process.poll() is not None


def test_serve_binds_loopback_and_serves_the_champion(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    status, body = _post(url + "/predict", RECORD)
    assert status == 200 and body["model_version"] == 2
    port = int(url.rsplit(":", 1)[1])
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port
    ]
    assert listening == [f"0100007F:{port:04X}"]  # bound to 127.0.0.1, and nothing wider


def test_kill_minus_nine_is_recovered_with_one_event(server, two_versions: Path) -> None:  # type: ignore[no-untyped-def]
    url, process = server
    before = len(EventStore(two_versions / ".mlmedic" / "events.db").query(kind="recovery"))
    [worker] = worker_pids(process.pid, two_versions)
    os.kill(worker, signal.SIGKILL)
    _wait_ready(url, timeout=60)
    assert worker_pids(process.pid, two_versions) != [worker]
    store = EventStore(two_versions / ".mlmedic" / "events.db")
    assert wait_until(lambda: len(store.query(kind="recovery")) > before)
    events = store.query(kind="recovery")
    assert len(events) == before + 1  # one incident, one event
    incident = events[-1]
    assert incident.outcome == "success"
    assert "killed by SIGKILL" in incident.details["cause"]
    assert incident.details["methods"] == ["restart"]
    assert incident.details["mttr_seconds"] > 0  # how fast: bench/bench_recovery.py
    assert _post(url + "/predict", RECORD)[0] == 200


def test_a_cached_model_failing_its_canary_is_reloaded_from_the_registry(
    server,
    two_versions: Path,  # type: ignore[no-untyped-def]
) -> None:
    url, process = server
    cache = two_versions / ".mlmedic" / "serving-cache" / "v2"
    assert (cache / "manifest.json").exists()
    example = cache / "model" / "input_example.json"
    broken = json.loads(example.read_text())
    broken["columns"] = ["nonsense", *broken["columns"][1:]]
    example.write_text(json.dumps(broken))  # the cached copy now fails its canary
    [worker] = worker_pids(process.pid, two_versions)
    os.kill(worker, signal.SIGKILL)
    _wait_ready(url, timeout=60)
    model = _get(url + "/model")[1]
    assert model["version"] == 2 and model["loaded_from"] == "registry"
    store = EventStore(two_versions / ".mlmedic" / "events.db")

    def recent() -> list[str]:
        return [e.action for e in store.query(kind="recovery")[-2:]]

    assert wait_until(lambda: {"reload-model", "service"} <= set(recent()))
    events = store.query(kind="recovery")
    actions = [e.action for e in events[-2:]]
    assert "reload-model" in actions and "service" in actions
    reload = next(e for e in reversed(events) if e.action == "reload-model")
    assert "canary" in reload.message


def test_champion_swap_under_load_fails_no_request(server, two_versions: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, body = _post(url + "/predict", RECORD)
                if status != 200:
                    failures.append(f"HTTP {status}: {body}")
                else:
                    versions.add(body["model_version"])
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: 2 in versions)  # load is flowing before the swap
    project = Project(two_versions)
    assert "(v2" in _get(url + "/openapi.json")[1]["info"]["description"]
    try:
        project.registry.rollback(reason="test swap")  # champion v2 -> v1
        assert wait_until(lambda: 1 in versions)
        # the API's description follows the version served
        assert "(v1" in _get(url + "/openapi.json")[1]["info"]["description"]
        served = len(failures) + len(versions)
        wait_until(lambda: False, timeout=0.3)  # keep the load on a moment after the swap
        assert len(failures) + len(versions) >= served
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        project.registry.rollback(to=2, reason="restore")
        project.close()
    assert failures == []
    assert {1, 2} <= versions
    swaps = EventStore(two_versions / ".mlmedic" / "events.db").query(kind="deploy")
    assert any(e.action == "hot-swap" and e.outcome == "success" for e in swaps)


def test_the_typed_api_holds_under_schemathesis(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`schemathesis run` against `mlmedic serve`: every operation of /openapi.json, every
    check, positive and negative data, its coverage (boundary values), fuzzing and stateful
    (predict -> feedback) phases, deterministic and bounded: no 5xx, no response outside the
    schema, no schema-violating input accepted, no valid input refused, the admin endpoint
    refusing a request without its token."""
    url, _ = server
    config = tmp_path / "schemathesis.toml"
    # 413 (more records than allowed, a body too large) is a rejection too
    # Every check, from the config (a --checks option would override the per-operation lines).
    # The protocols' bodies are looser than their schemas can say (dataframe_split, columns,
    # CSV, tensors by name): for them the two data checks are off, the rest (no 5xx, documented
    # statuses and shapes) stay on, with fewer examples.
    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "positive_data_acceptance",
        "use_after_free",
        "ensure_resource_availability",
        "missing_required_header",
        "ignored_auth",
        "unsupported_method",
        "allow_header_conformance",
    ]
    config.write_text(
        "".join(f"checks.{name}.enabled = true\n" for name in checks)
        + "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415",'
        ' "422", "428", "429", "5xx"]\n'
        "[[operations]]\n"
        'include-path-regex = "^/(invocations|ping|version|v2)"\n'
        "generation.max-examples = 5\n"
        "checks.positive_data_acceptance.enabled = false\n"
        "checks.negative_data_rejection.enabled = false\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            url + "/openapi.json",
            "--mode",
            "all",
            "--max-examples",
            "20",  # per operation and phase; the coverage phase adds the boundary values
            "--generation-deterministic",
            "--header",
            "Authorization: Bearer t0ken",  # the server fixture's MLMEDIC_ADMIN_TOKEN
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # the one warning expected: the protocols' tensors are looser than their schema says
    assert "Tested: 20" in run.stdout and "Failures:" not in run.stdout, run.stdout[-3000:]


def test_the_live_dashboard_in_a_real_browser(server, two_versions: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """GET /dashboard of a running `mlmedic serve`: the figures of the event store, no request
    off the machine, no console error, not blank; it refreshes itself."""
    from browser import distinct_pixels, load
    from mlmedic.views.dashboard import build

    url, _ = server
    with urllib.request.urlopen(url + "/dashboard", timeout=30) as answer:
        assert answer.status == 200 and "text/html" in answer.headers["content-type"]
        html = answer.read().decode()
    assert '<meta http-equiv="refresh" content="30">' in html
    loaded = load(url + "/dashboard", tmp_path)
    assert loaded.console == [] and loaded.requests_off_machine == []
    assert distinct_pixels(loaded.screenshot) > 20
    shown = dict(re.findall(r'id="tile-(\w+)" data-value="([^"]*)"', loaded.dom))
    with EventStore(two_versions / ".mlmedic" / "events.db") as store:
        board = build(store, now=time.time(), state_dir=two_versions / ".mlmedic")
    for key in ("auto_fix", "rollbacks", "retrains", "recoveries", "mttr"):
        assert shown[key] == board.figure(key).shown, key
    assert shown["health"].endswith("%")  # serving ready counts in


def test_malformed_requests_never_get_a_5xx(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    cases: list[bytes] = [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"records": {}}',
        json.dumps({**RECORD, "age": "x"}).encode(),
        json.dumps({"records": [RECORD] * 5000}).encode(),
        b"\xff\xfe",
        b"x" * 3_000_000,
    ]
    for body in cases:
        request = urllib.request.Request(
            url + "/predict", data=body, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        assert 400 <= status < 500, (body[:40], status)


def test_admin_reload_over_http(server, two_versions: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    request = urllib.request.Request(url + "/admin/reload", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=5)
    assert denied.value.code == 401
    denied.value.close()
    request.add_header("authorization", "Bearer t0ken")
    with urllib.request.urlopen(request, timeout=30) as answer:
        served = json.loads(answer.read())["model_version"]
    project = Project(two_versions)
    assert served == project.registry.champion().version  # type: ignore[union-attr]
    project.close()


def test_recover_restarts_an_unsupervised_service(tmp_path: Path) -> None:
    """`mlmedic recover`: the service is down, the restart command brings it back."""
    port = free_port()
    pidfile = tmp_path / "service.pid"
    command = (
        f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {tmp_path} "
        f"> /dev/null 2>&1 & echo $! > {pidfile}"
    )
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")

    def recover(restart: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mlmedic",
                "recover",
                "--url",
                f"http://127.0.0.1:{port}",
                "--command",
                restart,
                "--path",
                "/",
                "-C",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    try:
        done = recover(command)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "recovered in" in done.stdout
        events = EventStore(tmp_path / ".mlmedic" / "events.db").query(kind="recovery")
        assert events[-1].outcome == "success" and events[-1].details["attempts"] == 1
        again = recover("false")  # healthy now: the command is not run
        assert again.returncode == 0 and "is healthy" in again.stdout
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


def _serving_a_bad_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer: str, *, seeds: tuple[int, int]
) -> tuple[Path, subprocess.Popen[bytes], str, Any]:
    """A project whose v1 is good and whose champion v2 was made by ``trainer`` (a module in
    ``tmp_path``, on the servers' path too), served: (root, process, url, open log)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / "shop"
    root.mkdir()
    project = Project(root)
    assert run_pipeline(project, make_churn(1500, seed=seeds[0]), target=TARGET).deployed
    bad = run_pipeline(project, make_churn(1500, seed=seeds[1]), target=TARGET, trainer=trainer)
    assert bad.deployed and bad.champion_after == 2
    project.close()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(tmp_path))
    log = (root / "serve.log").open("ab")
    port = free_port()
    return root, start_server(root, port, log, env=env), f"http://127.0.0.1:{port}", log


def test_a_champion_that_cannot_serve_falls_back_and_is_rolled_back_on_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion fails its canary: workers serve v1 at once (no outage), the supervisor
    confirms in a fresh process that v2 is at fault and v1 passes, and moves the champion."""
    root, process, url, log = _serving_a_bad_champion(
        tmp_path, monkeypatch, write_fragile_trainer(tmp_path), seeds=(41, 42)
    )
    events = EventStore(root / ".mlmedic" / "events.db")
    try:
        _wait_ready(url, timeout=120)
        assert _get(url + "/model")[1]["version"] == 1
        deadline = time.monotonic() + 60
        while events.last("rollback") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _post(url + "/predict", RECORD)[0] == 200
    finally:
        stop_server(process)
        log.close()
    rollback = events.last("rollback")
    assert rollback is not None and "at fault" in rollback.message
    assert rollback.details["from_version"] == 2 and rollback.details["to_version"] == 1
    alerts = [e for e in events.query(kind="alert") if e.action == "model-fallback"]
    assert len(alerts) == 1 and "rolled back v2 -> v1" in alerts[0].message
    project = Project(root)
    assert project.registry.champion().version == 1  # type: ignore[union-attr]
    project.close()


def test_recovery_replays_on_the_simulated_clock_and_the_backoff_resets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit test of the supervisor's recovery loop alone (process operations faked): its
    waits, timestamps and back-off all come from the injected clock."""
    from mlmedic.core.clock import SimulatedClock
    from mlmedic.core.config import ServiceRecoveryConfig, ServingConfig
    from mlmedic.serving.supervisor import Incident, Supervisor

    clock = SimulatedClock(start=1_000_000.0)
    supervisor = Supervisor(
        tmp_path,
        serving=ServingConfig(healthy_reset_seconds=600),
        recovery=ServiceRecoveryConfig(recovery_delay_seconds=5),
        clock=clock,
    )
    answers = iter([(False, "refused"), (False, "refused"), (True, "")])
    monkeypatch.setattr(supervisor, "_apply", lambda method, incident: (method, "faked"))
    monkeypatch.setattr(supervisor, "wait_ready", lambda timeout: next(answers))
    monkeypatch.setattr(supervisor, "_fork_standby", lambda: None)
    started = time.monotonic()
    supervisor._recover(Incident(cause="worker 0 exited", detected_at=clock.now()))
    assert time.monotonic() - started < 5.0  # 15 s of back-off took no real time

    recovery = supervisor.events.last("recovery")
    assert recovery is not None
    # attempt 1 at once, then back-offs of 5 s and 10 s: MTTR is 15 s of simulated time
    assert recovery.details["mttr_seconds"] == 15.0
    assert recovery.details["attempts"] == 3
    assert supervisor._backoff == 20.0

    clock.advance(599)
    supervisor._reset_backoff_when_healthy()
    assert supervisor._backoff == 20.0  # not healthy long enough yet
    clock.advance(2)
    supervisor._reset_backoff_when_healthy()
    assert supervisor._backoff == 5.0
    supervisor.events.close()


def test_the_api_token_guards_every_path_of_a_real_server_but_the_probes(
    two_versions: Path,
) -> None:
    """#21 item 5, over real HTTP: the model's features and classes are not readable without
    the token (/model, /openapi.json, /docs, /redoc); the probes stay open."""
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLMEDIC_API_TOKEN="tok3n")
    output = (two_versions / f"serve-{port}.log").open("ab")
    process = start_server(two_versions, port, output, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)  # /ready is open
        assert _get(url + "/health")[0] == 200
        for path in ("/model", "/openapi.json", "/docs", "/redoc", "/dashboard", "/metrics"):
            request = urllib.request.Request(url + path)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401, path
            refused.value.close()
            request.add_header("Authorization", "Bearer tok3n")
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200, path
    finally:
        stop_server(process)
        output.close()


def test_a_client_that_leaves_is_counted_not_logged_as_an_error(server) -> None:  # type: ignore[no-untyped-def]
    """#21 item 8: a client that sends half a body and hangs up is a debug line and a count in
    mlmedic_client_disconnects_total, never an 'unhandled error' traceback."""
    import socket

    url, process = server
    port = int(url.rsplit(":", 1)[1])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000\r\n\r\n" + b'{"records": [' + b" " * 100
            )
    pattern = re.compile(r'mlmedic_client_disconnects_total\{endpoint="/predict"\} (\d+)')

    def counted() -> int:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
            found = pattern.search(answer.read().decode())
        return int(float(found.group(1))) if found else 0

    assert wait_until(lambda: counted() >= 3, 30)
    assert _post(url + "/predict", RECORD)[0] == 200
    logs = [p for p in Path(process.args[-1]).glob("serve-*.log")]
    assert logs and not any("unhandled error" in p.read_text() for p in logs)


def test_an_input_that_crashes_the_champion_twice_rolls_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 item 3: v2 passes the gate and the canary but kills its worker with SIGSEGV on one
    input. The first crash replaces the worker; the second, within crash_loop_window_seconds of
    v2's deploy, is a crash loop: one rollback to v1, its evidence naming the input's
    fingerprint."""
    from mlmedic.model.faults import write_crashing_trainer

    root, process, url, log = _serving_a_bad_champion(
        tmp_path, monkeypatch, write_crashing_trainer(tmp_path), seeds=(43, 44)
    )
    events = EventStore(root / ".mlmedic" / "events.db")
    poison = dict(RECORD, age=999)
    try:
        _wait_ready(url, timeout=120)
        assert _post(url + "/predict", RECORD)[0] == 200
        for crash in range(2):
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                _post(url + "/predict", poison)
            if crash == 0:  # the first crash: the worker is replaced, v2 still serves
                assert wait_until(lambda: len(events.query(kind="recovery")) >= 1, 60)
                _wait_ready(url)
                assert _get(url + "/model")[1]["version"] == 2
                assert events.last("rollback") is None
        assert wait_until(lambda: events.last("rollback") is not None, 90)
        _wait_ready(url)
        assert wait_until(lambda: _get(url + "/model")[1].get("version") == 1, 30)
        assert _post(url + "/predict", poison)[0] == 200  # v1 scores it
    finally:
        stop_server(process)
        log.close()
    rollback = events.last("rollback")
    assert rollback is not None and rollback.details["from_version"] == 2
    assert rollback.details["to_version"] == 1
    recoveries = [e for e in events.query(kind="recovery") if e.action == "service"]
    evidence = " ".join(" ".join(e.details.get("evidence", [])) for e in recoveries)
    assert "inside a v2 model call, on the input with fingerprint" in evidence


def test_a_record_the_served_champion_cannot_score_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 item 7 through a real server: v2 raises on any batch holding age 777. In a request of
    three records the middle one gets its own error with its index, the other two their
    predictions from v2 — and v2 stays the champion."""
    from mlmedic.model.faults import write_picky_trainer

    _, process, url, log = _serving_a_bad_champion(
        tmp_path, monkeypatch, write_picky_trainer(tmp_path), seeds=(45, 46)
    )
    try:
        _wait_ready(url, timeout=120)
        records = [RECORD, dict(RECORD, age=777), dict(RECORD, age=40)]
        status, body = _post(url + "/predict", {"records": records})
        assert status == 200, body
        assert body["model_version"] == 2
        assert body["predictions"][1] is None and None not in body["predictions"][::2]
        assert [e["index"] for e in body["errors"]] == [1]
        assert "cannot score age 777" in body["errors"][0]["detail"]
        alone = _post(url + "/predict", {"records": [dict(RECORD, age=777)]})
        assert alone[0] == 422  # nothing to answer: refused, not a 5xx
    finally:
        stop_server(process)
        log.close()


def test_every_metric_the_grafana_dashboard_queries_is_served_by_two_workers(
    two_versions: Path, tmp_path: Path
) -> None:
    """#22 item 1: after a monitoring pass and traffic, `mlmedic serve --workers 2`: every
    metric a query of examples/grafana/ names has samples in a scrape (whichever worker
    answers), and the request counts of both workers add up."""
    import shutil

    root = tmp_path / two_versions.name  # the model is named after the directory
    shutil.copytree(two_versions, root)
    batch = tmp_path / "batch.csv"
    make_churn(600, seed=79).to_csv(batch, index=False)
    monitored = subprocess.run(
        [sys.executable, "-m", "mlmedic", "monitor", "--batch", str(batch), "-C", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
    )
    assert monitored.returncode == 0, monitored.stdout + monitored.stderr
    two_versions = root
    import yaml

    repo = Path(__file__).resolve().parents[1]
    board = json.loads((repo / "examples" / "grafana" / "mlmedic.json").read_text())
    rules = yaml.safe_load((repo / "deploy" / "prometheus" / "rules.yml").read_text())
    expressions = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    expressions += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    names = {name for expr in expressions for name in re.findall(r"\b(mlmedic_\w+)", expr)}
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    output = (two_versions / f"serve-{port}.log").open("ab")
    process = start_server(two_versions, port, output, workers=2, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)
        assert wait_until(lambda: len(worker_pids(process.pid, two_versions)) == 2, 30)
        for _ in range(40):
            assert _post(url + "/predict", RECORD)[0] == 200
        counted = re.compile(r'^mlmedic_requests_total\{[^}]*"/predict"[^}]*\} (\S+)', re.M)

        def scrape() -> str:
            with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
                return str(answer.read().decode())

        def predictions(text: str) -> float:
            return sum(float(v) for v in counted.findall(text))

        assert wait_until(lambda: predictions(scrape()) >= 40, 30)
        text = scrape()
        sampled = set(re.findall(r"^(mlmedic_\w+?)(?:\{| )", text, re.M))
        missing = sorted(n for n in names if n not in sampled)
        assert len(names) >= 10 and missing == [], missing
    finally:
        stop_server(process)
        output.close()


def test_invocations_answer_as_mlflow_models_serve_does_for_the_same_version(
    two_versions: Path,
) -> None:
    """#22 item 2: the same payloads — dataframe_split, dataframe_records, instances, inputs
    (records and columns), CSV, and params output=probabilities — to `mlflow models serve` of
    the champion and to `mlmedic serve` on it: the same predictions."""
    import math

    project = Project(two_versions)
    name, uri = project.registry.model_name, project.registry.tracking_uri
    champion = project.registry.champion()
    project.close()
    assert champion is not None
    frame = make_churn(5, seed=77).drop(columns=[TARGET, "signup_at"])
    records = json.loads(frame.to_json(orient="records"))
    columns = {c: [r[c] for r in records] for c in frame.columns}
    split = json.loads(frame.to_json(orient="split", index=False))
    wanted = {"output": "probabilities"}
    payloads: list[tuple[str, bytes]] = [
        ("application/json", json.dumps({"dataframe_records": records}).encode()),
        ("application/json", json.dumps({"dataframe_split": split}).encode()),
        ("application/json", json.dumps({"instances": records}).encode()),
        ("application/json", json.dumps({"inputs": columns}).encode()),
        ("application/json", json.dumps({"dataframe_records": records, "params": wanted}).encode()),
        ("text/csv", frame.to_csv(index=False).encode()),
    ]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_TRACKING_URI=uri)
    theirs_port, ours_port = free_port(), free_port()
    log = (two_versions / f"mlflow-{theirs_port}.log").open("ab")
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(theirs_port)]
    theirs = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    output = (two_versions / f"serve-{ours_port}.log").open("ab")
    plain = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    ours = start_server(two_versions, ours_port, output, env=plain)

    def invoke(port: int, kind: str, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"content-type": kind}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"{}")

    def status(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return int(answer.status)
        except OSError:
            return 0

    def close(a: Any, b: Any) -> bool:
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return bool(a == b)

    try:
        _wait_ready(f"http://127.0.0.1:{ours_port}")
        assert wait_until(lambda: status(f"http://127.0.0.1:{theirs_port}/ping") == 200, 120), (
            two_versions / f"mlflow-{theirs_port}.log"
        ).read_text()[-2000:]
        for kind, body in payloads:
            status_t, expected = invoke(theirs_port, kind, body)
            status_o, answered = invoke(ours_port, kind, body)
            assert status_t == status_o == 200, (kind, body[:80], expected, answered)
            assert len(answered["predictions"]) == len(records)
            pairs = zip(answered["predictions"], expected["predictions"], strict=True)
            assert all(close(a, b) for a, b in pairs), (expected, answered)
        bad = invoke(ours_port, "application/json", b'{"records": []}')
        assert bad[0] == 400 and bad[1]["error_code"] == "BAD_REQUEST"
        for path in ("/ping", "/version"):
            assert status(f"http://127.0.0.1:{ours_port}{path}") == 200
    finally:
        os.killpg(theirs.pid, signal.SIGTERM)
        theirs.wait(30)
        stop_server(ours)
        log.close()
        output.close()


def test_a_triton_client_speaks_the_open_inference_protocol_to_mlmedic_serve(
    two_versions: Path,
) -> None:
    """#22 item 3 with a real v2 client (tritonclient, binary tensors by default): health,
    metadata, typed inputs (INT64, FP64, BYTES), predict and predict_proba outputs matching
    /predict's, the request id usable for feedback, and errors as {"error": ...}."""
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    port = free_port()
    output = (two_versions / f"serve-{port}.log").open("ab")
    process = start_server(
        two_versions, port, output, env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    )
    frame = make_churn(4, seed=78).drop(columns=[TARGET, "signup_at"])
    try:
        _wait_ready(f"http://127.0.0.1:{port}")
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live() and client.is_server_ready()
        name = _get(f"http://127.0.0.1:{port}/model")[1]["name"]
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        types = {i["name"]: i["datatype"] for i in meta["inputs"]}
        assert types["age"] == "INT64" and types["region"] == "BYTES"
        inputs = []
        for column, kind in types.items():
            values = frame[column].to_numpy()
            array = (
                values.astype(object)
                if kind == "BYTES"
                else values.astype(np.int64 if kind == "INT64" else np.float64)
            )
            tensor = triton.InferInput(column, [len(frame)], kind)
            tensor.set_data_from_numpy(array)  # binary by default
            inputs.append(tensor)
        wanted = [triton.InferRequestedOutput(n) for n in ("predict", "predict_proba")]
        result = client.infer(name, inputs, outputs=wanted, request_id="triton-1")
        labels = result.as_numpy("predict")
        probabilities = result.as_numpy("predict_proba")
        records = json.loads(frame.to_json(orient="records"))
        status, same = _post(f"http://127.0.0.1:{port}/predict", {"records": records})
        assert status == 200
        assert labels.tolist() == same["predictions"]
        assert np.allclose(probabilities, same["probabilities"], atol=1e-6)
        assert result.get_response()["id"] == "triton-1"
        feedback = {"request_id": "triton-1", "label": int(labels[0])}
        status, recorded = _post(f"http://127.0.0.1:{port}/feedback", feedback)
        assert status == 200 and "unknown_request_ids" not in recorded, recorded
        with pytest.raises(InferenceServerException, match="not served"):
            client.infer("another-model", inputs)
        bad = triton.InferInput("age", [len(frame)], "BYTES")
        bad.set_data_from_numpy(np.array(["x"] * len(frame), dtype=object))
        with pytest.raises(InferenceServerException, match="expected a number"):
            client.infer(name, [bad if i.name() == "age" else i for i in inputs])
    finally:
        stop_server(process)
        output.close()


@pytest.mark.parametrize(("path", "rendered"), [("/docs", "opblock"), ("/redoc", "operation")])
def test_the_api_docs_render_with_no_network(  # type: ignore[no-untyped-def]
    server, tmp_path: Path, path: str, rendered: str
) -> None:
    """#22 item 5: Swagger UI and ReDoc in headless Chromium, every request off the machine
    trapped: their scripts come from this server, and the operations are on the page."""
    from browser import load

    url, _ = server
    page = load(url + path, tmp_path, settle_ms=8000)
    assert page.requests_off_machine == [], page.requests_off_machine
    assert rendered in page.dom and "/predict" in page.dom, page.dom[:2000]
    assert "/invocations" in page.dom and "/v2/models/" in page.dom


_OPENMP_THREADS = """
import threading
from mlmedic.serving.pool import one_thread_per_worker
one_thread_per_worker()
import sklearn.ensemble  # loads OpenMP after the limit, as a worker's build does
from threadpoolctl import threadpool_info
seen = {}
def probe():
    seen["n"] = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
thread = threading.Thread(target=probe)  # an executor's thread, not the one that set it
thread.start()
thread.join()
print(seen["n"])
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "[1]"), ("2", "[2]")])
def test_a_worker_runs_its_model_calls_on_one_openmp_thread(
    given: str | None, expected: str
) -> None:
    """#22: OpenMP is loaded after a worker starts, so its thread count comes from the
    environment the worker sets — for every thread, not only the one that set it — unless the
    operator set ``OMP_NUM_THREADS``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if given is not None:
        env["OMP_NUM_THREADS"] = given
    out = subprocess.run(
        [sys.executable, "-c", _OPENMP_THREADS], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
