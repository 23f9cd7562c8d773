"""Faults in mlmedic's own machinery, injected into real processes: the healer never makes
things worse (issue: locked event store, blind rollback, orphans, no loadable champion,
concurrent runs, artifacts in the working directory)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.faults import corrupt_file, registry_model_file
from mlmedic.model.project import Project
from mlmedic.serving.launch import free_port, start_server, stop_server, wait_ready, worker_pids
from mlmedic.store.events import Event, EventStore

# servers, supervisors and commands in their own processes: not in the fast tier
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "mlmedic"]
RECORD = {
    k: (v.item() if hasattr(v, "item") else v)
    for k, v in make_churn(1, seed=3).drop(columns=[TARGET, "signup_at"]).iloc[0].items()
}


def _until(condition, timeout: float = 60.0, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def _post(url: str, payload: object) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def _get_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        return dict(json.loads(answer.read()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def _cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "mlmedic", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env or dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, train_isolated) -> Path:  # type: ignore[no-untyped-def]
    """Trained once per module; tests get copies."""
    root = train_isolated(tmp_path_factory.mktemp("faults-template") / "served", 51, 52)
    config = {"service_recovery": {"health_check_interval_seconds": 0.5}}
    (root / "self_healing_config.json").write_text(json.dumps(config))
    return root  # type: ignore[no-any-return]


@pytest.fixture
def served_project(template: Path, tmp_path: Path) -> Path:
    """A copy of the template: its own registry database, events, caches and backups (the
    registry's model files stay in the template's artifact store, which these tests only
    read; the test that corrupts a registry artifact trains a project of its own)."""
    root = tmp_path / "served"
    shutil.copytree(template, root)
    return root


def _serve(root: Path, port: int | None = None, workers: int = 1):  # type: ignore[no-untyped-def]
    port = port or free_port()
    log = (root / f"serve-{port}.log").open("ab")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    process = start_server(root, port, log, workers=workers, env=env)
    url = f"http://127.0.0.1:{port}"
    assert wait_ready(url, 90), (root / f"serve-{port}.log").read_text()[-2000:]
    assert _until(lambda: len(worker_pids(process.pid, root)) == workers, 30)
    return process, url, log, port


def test_a_locked_event_store_never_stops_supervision(served_project: Path) -> None:
    """Lock events.db, kill -9 the worker: it is replaced, the supervisor lives on, and once the
    lock is released the incident and the outage are in the store."""
    process, url, log, _ = _serve(served_project)
    store = served_project / ".mlmedic" / "events.db"
    try:
        blocker = sqlite3.connect(store, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            [worker] = worker_pids(process.pid, served_project)
            os.kill(worker, signal.SIGKILL)
            assert _until(lambda: worker_pids(process.pid, served_project) not in ([], [worker]))
            assert wait_ready(url, 30)
            assert _post(url + "/predict", RECORD) == 200
            # the incident is recorded while the store is still locked: to the buffer
            buffer = store.with_name("events.db.buffer.jsonl")
            assert _until(lambda: buffer.exists() and '"recovery"' in buffer.read_text(), 30)
            assert process.poll() is None, "the supervisor exited"
            assert _post(url + "/predict", RECORD) == 200
        finally:
            blocker.execute("COMMIT")
            blocker.close()

        def written() -> bool:
            events = EventStore(store).query()
            return any(e.kind == "recovery" and e.action == "service" for e in events) and any(
                e.kind == "component" and e.action == "event-store restored" for e in events
            )

        assert _until(written, 30)
        restored = [
            e
            for e in EventStore(store).query(kind="component")
            if e.action == "event-store restored"
        ]
        assert all("locked" in e.details["cause"] for e in restored)
        assert process.poll() is None
    finally:
        stop_server(process)
        log.close()


def test_no_prediction_row_is_lost_while_the_event_store_is_locked(served_project: Path) -> None:
    """#21 item 9: eight clients for eight seconds, two workers, events.db locked for the
    first six: every answered request's row is in the prediction log, once."""
    import concurrent.futures
    import urllib.request

    from mlmedic.store.logstore import read_predictions

    process, url, log, _ = _serve(served_project, workers=2)
    store = served_project / ".mlmedic" / "events.db"
    body = json.dumps(RECORD).encode()

    def client(until: float) -> list[str]:
        answered = []
        while time.monotonic() < until:
            request = urllib.request.Request(
                url + "/predict", data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                answered.append(json.loads(answer.read())["request_id"])
        return answered

    try:
        blocker = sqlite3.connect(store, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            until = time.monotonic() + 8.0
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(client, until) for _ in range(8)]
                time.sleep(6.0)  # the lock is the fault under test: held for a fixed span
                blocker.execute("COMMIT")
                answered = [rid for f in futures for rid in f.result()]
        finally:
            blocker.close()
        assert len(answered) > 100 and process.poll() is None
        folder = served_project / ".mlmedic" / "predictions"

        def logged() -> list[str]:
            return list(read_predictions(folder)["request_id"])

        assert _until(lambda: len(logged()) >= len(answered), 30), (len(logged()), len(answered))
        rows = logged()
        assert sorted(rows) == sorted(answered)  # each answered row once, none missing
    finally:
        stop_server(process)
        log.close()


def test_kill_minus_nine_of_the_supervisor_takes_its_children_along(served_project: Path) -> None:
    process, _url, log, port = _serve(served_project)
    state = json.loads((served_project / ".mlmedic" / "supervisor.json").read_text())
    children = [int(p) for p in state["workers"]] + [state["watcher"]]
    children += [state["standby"]] if state["standby"] else []
    try:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert _until(lambda: not any(_alive(pid) for pid in children), 15), [
            pid for pid in children if _alive(pid)
        ]
        again, url2, log2, _ = _serve(served_project, port)  # the port is free at once
        try:
            assert _post(url2 + "/predict", RECORD) == 200
        finally:
            stop_server(again)
            log2.close()
    finally:
        if process.poll() is None:
            stop_server(process)
        log.close()


def test_no_loadable_champion_falls_back_to_a_version_that_loads(
    tmp_path: Path,
    train_isolated,  # type: ignore[no-untyped-def]
) -> None:
    """v2's cached copy and registry artifact are corrupt: the server serves v1 from the first
    request, the supervisor moves the champion to v1 with evidence, one alert says so."""
    served_project = train_isolated(tmp_path / "served", 51, 52)  # its own registry artifacts
    (served_project / "self_healing_config.json").write_text(
        json.dumps({"service_recovery": {"health_check_interval_seconds": 0.5}})
    )
    state = served_project / ".mlmedic"
    cached = state / "serving-cache" / "v2" / "model" / "model.skops"
    corrupt_file(cached)
    project = Project(served_project)
    v2_run = project.registry.info(2).run_id
    project.close()
    assert v2_run is not None
    artifact = registry_model_file(state, v2_run)
    assert artifact is not None
    corrupt_file(artifact)
    process, url, log, _ = _serve(served_project)
    events = EventStore(state / "events.db")
    try:
        assert _get_json(url + "/model")["version"] == 1
        assert _post(url + "/predict", RECORD) == 200
        assert _until(lambda: events.last("rollback") is not None, 60)
        assert _until(lambda: _get_json(url + "/model")["fallback"] is None, 30)

        def alerts() -> list[Event]:
            return [e for e in events.query(kind="alert") if e.action == "model-fallback"]

        assert _until(lambda: len(alerts()) >= 1, 30)
        assert len(alerts()) == 1
        swaps = [e for e in events.query(kind="deploy") if e.action == "hot-swap"]
        assert len(swaps) <= 2  # not one per 0.25 s retry
    finally:
        stop_server(process)
        log.close()
    project = Project(served_project)
    assert project.registry.champion().version == 1  # type: ignore[union-attr]
    assert {v.version: v.status for v in project.registry.versions()}[1] == "champion"
    project.close()


def test_the_fallback_never_serves_what_a_person_rolled_back_from(
    tmp_path: Path,
    train_isolated,  # type: ignore[no-untyped-def]
) -> None:
    """#21 item 4, as the issue met it: v1, v2, v3 served in turn; a person runs `mlmedic
    rollback` (v3 -> v2); then v2's cache, backup and registry copy are corrupt and the registry
    is away. The server falls back to v1, the champion before — never to v3, the newest copy."""
    root = train_isolated(tmp_path / "served", 51, 52, 53)
    back = _cli("rollback", "-C", str(root))
    assert back.returncode == 0 and "champion v3 -> v2" in back.stdout, back.stdout + back.stderr
    state = root / ".mlmedic"
    project = Project(root)
    v2_run, backups = project.registry.info(2).run_id, project.registry.backup_dir
    project.close()
    assert v2_run is not None
    for copy in (state / "serving-cache" / "v2", backups / "v2"):
        assert (copy / "model" / "model.skops").exists(), copy
        corrupt_file(copy / "model" / "model.skops")
    artifact = registry_model_file(state, v2_run)
    assert artifact is not None
    corrupt_file(artifact)
    port = free_port()
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens: the registry is away
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_TRACKING_URI=away)
    log = (root / "serve.log").open("ab")
    process = start_server(root, port, log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(url, 90), (root / "serve.log").read_text()[-2000:]
        model = _get_json(url + "/model")
        assert model["version"] == 1, model
        assert model["fallback"] is not None
        assert _post(url + "/predict", RECORD) == 200
    finally:
        stop_server(process)
        log.close()


def test_a_healthy_champion_is_never_rolled_back_by_the_supervisor(served_project: Path) -> None:
    """Right after a deploy, the diagnosis of a good champion finds no fault: no rollback."""
    from mlmedic.core.config import load_settings
    from mlmedic.serving.supervisor import Incident, Supervisor

    settings = load_settings(served_project).self_healing
    supervisor = Supervisor(
        served_project, serving=settings.serving, recovery=settings.service_recovery
    )
    incident = Incident(cause="test", detected_at=time.time(), model_crash=None)
    assert supervisor._rollback_on_evidence(incident) is None
    assert any("passes its canary" in e for e in incident.evidence)
    project = Project(served_project)
    assert project.registry.champion().version == 2  # type: ignore[union-attr]
    project.close()


@pytest.mark.parametrize(
    ("option", "value"), [("--workers", "-3"), ("--workers", "0"), ("--port", "99999")]
)
def test_invalid_serve_options_exit_2_before_anything_starts(
    tmp_path: Path,
    option: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlmedic.cli import main

    state = tmp_path / ".mlmedic"
    state.mkdir()
    pointer = state / "champion.json"
    pointer.write_text('{"model_name": "x", "version": 3}')
    monkeypatch.setattr(sys, "argv", ["mlmedic", "serve", option, value, "-C", str(tmp_path)])
    with pytest.raises(SystemExit) as done:
        main()
    error = capsys.readouterr().err
    assert done.value.code == 2, error
    assert "Traceback" not in error and option in error
    assert pointer.read_text() == '{"model_name": "x", "version": 3}'
    assert sorted(p.name for p in state.iterdir()) == ["champion.json"]


def test_two_runs_at_once_leave_the_champion_state_consistent(tmp_path: Path) -> None:
    """Two `mlmedic run` at once: they wait (saying so) while a run holds the run lock, then run
    one after the other, never interleaved; each deploy moves the champion from the version that
    really was champion."""
    from mlmedic.core.lock import RUN_LOCK, project_lock

    root = tmp_path / "busy"
    root.mkdir()
    project = Project(root)
    assert run_pipeline(project, make_churn(1200, seed=61), target=TARGET).deployed
    project.close()
    for seed in (62, 63):
        make_churn(1200, seed=seed).to_csv(tmp_path / f"d{seed}.csv", index=False)
    with project_lock(root / ".mlmedic", "a run already going", lock_file=RUN_LOCK):
        runs = [
            subprocess.Popen(
                [*CLI, "run", str(tmp_path / f"d{s}.csv"), "-t", TARGET, "-C", str(root)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
            )
            for s in (62, 63)
        ]
        # the first thing each says: it waits (the lock comes before any stage)
        first = [run.stdout.readline() for run in runs]  # type: ignore[union-attr]
        assert all("waiting for a run already going" in line for line in first), first
    outputs = [r.communicate(timeout=300)[0] for r in runs]
    assert all(r.returncode in (0, 1) for r in runs), outputs
    project = Project(root)
    # never interleaved: each run is gated before the next one trains
    order = [
        e.kind
        for e in project.events.query(kind=("train", "gate"))
        if e.kind == "train" or e.action == "validate"
    ]
    assert order == ["train", "gate"] * 3
    versions = project.registry.versions()
    champion = project.registry.champion()
    previous = project.registry.alias("previous")
    assert champion is not None
    assert [v.version for v in versions if v.status == "champion"] == [champion.version]
    gates = [e for e in project.events.query(kind="gate") if e.action == "validate"]
    deployed = [e for e in project.events.query(kind="deploy") if e.action == "deploy"]
    # each deploy moved the champion from the version that really was champion then
    chain = [None] + [int(e.model_version) for e in deployed]  # type: ignore[arg-type]
    assert [e.details["from_version"] for e in deployed] == chain[:-1]
    assert champion.version == chain[-1]
    assert previous is not None and previous.version == chain[-2]
    assert len(gates) == 3
    project.close()


def test_a_local_tracking_uri_keeps_artifacts_in_the_project(tmp_path: Path) -> None:
    """MLFLOW_TRACKING_URI=sqlite:///... set by the user: nothing lands in the working dir."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    root = tmp_path / "proj"
    root.mkdir()
    make_churn(800, seed=71).to_csv(tmp_path / "d.csv", index=False)
    env = dict(
        os.environ,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'user.db'}",
    )
    done = _cli("run", str(tmp_path / "d.csv"), "-t", TARGET, "-C", str(root), cwd=work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(work.iterdir()) == []
    assert list((root / ".mlmedic" / "mlartifacts").rglob("model.skops"))


def test_only_the_dead_worker_is_replaced_and_by_the_warm_standby(served_project: Path) -> None:
    port = free_port()
    log = (served_project / "serve-two.log").open("ab")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    process = start_server(served_project, port, log, workers=2, env=env)
    url = f"http://127.0.0.1:{port}"
    state = served_project / ".mlmedic" / "supervisor.json"

    def standby() -> int | None:
        return json.loads(state.read_text()).get("standby")

    try:
        assert wait_ready(url, 90)
        assert _until(lambda: len(worker_pids(process.pid, served_project)) == 2 and standby())
        assert _until(lambda: json.loads(state.read_text()).get("standby_ready"), 60)
        spare = standby()
        victim, survivor = worker_pids(process.pid, served_project)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            workers = worker_pids(process.pid, served_project)
            return victim not in workers and len(workers) == 2

        assert _until(replaced, 30)
        workers = worker_pids(process.pid, served_project)
        assert sorted(workers) == sorted([survivor, spare])  # the survivor was never restarted
        assert _until(lambda: standby() not in (None, spare), 30)  # and a new standby is forked
        assert _post(url + "/predict", RECORD) == 200
    finally:
        stop_server(process)
        log.close()


def test_a_stopped_worker_is_caught_in_seconds_and_replaced_by_the_standby(
    served_project: Path,
) -> None:
    """#21 item 1: `kill -STOP` (as a deadlock would) — its heartbeat stops, the supervisor
    kills it within serving.hang_seconds (2 s) instead of waiting for the 60 s probe, the warm
    standby takes its place, and the incident says the worker hung."""
    config = json.loads((served_project / "self_healing_config.json").read_text())
    config["service_recovery"]["health_check_interval_seconds"] = 60  # the probe cannot help
    (served_project / "self_healing_config.json").write_text(json.dumps(config))
    process, url, log, _ = _serve(served_project)
    state = served_project / ".mlmedic" / "supervisor.json"
    try:
        assert _until(lambda: json.loads(state.read_text()).get("standby_ready"), 60)
        spare = json.loads(state.read_text())["standby"]
        [victim] = worker_pids(process.pid, served_project)
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        assert _until(lambda: worker_pids(process.pid, served_project) == [spare], 30)
        replaced = time.monotonic() - stopped
        assert _post(url + "/predict", RECORD) == 200
        assert not _alive(victim) and process.poll() is None
        print(f"stopped worker replaced {replaced:.2f} s after SIGSTOP")

        def incident() -> Event | None:
            found = [e for e in EventStore(served_project / ".mlmedic" / "events.db").query()]
            hung = [e for e in found if e.kind == "recovery" and "hung" in e.message]
            return hung[0] if hung else None

        assert _until(lambda: incident() is not None, 30)
        event = incident()
        assert event is not None and "event loop has not answered" in event.message
    finally:
        stop_server(process)
        log.close()


def test_a_full_disk_is_a_degraded_mode_not_a_death(template: Path, tmp_path: Path) -> None:
    """#21 item 2: the project on a 64 MB tmpfs, filled to the last byte, then a worker killed:
    the supervisor replaces it and keeps serving; its events that could not be written are
    counted, and once space is freed the store says how many; no temporary file is left."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    process = None
    log = (tmp_path / "serve.log").open("ab")  # the log off the full disk, to read it after
    try:
        root = disk / "served"
        shutil.copytree(template, root)
        port = free_port()
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
        process = start_server(root, port, log, env=env)
        url = f"http://127.0.0.1:{port}"
        state = root / ".mlmedic" / "supervisor.json"
        assert wait_ready(url, 90), (tmp_path / "serve.log").read_text()[-2000:]
        assert _until(lambda: json.loads(state.read_text()).get("standby_ready"), 60)
        with (disk / "filler").open("wb") as filler, pytest.raises(OSError):
            while True:  # every byte left
                filler.write(b"\0" * (1 << 20))
                filler.flush()
        [victim] = worker_pids(process.pid, root)
        os.kill(victim, signal.SIGKILL)
        assert _until(lambda: victim not in worker_pids(process.pid, root), 30)
        assert _until(lambda: _post(url + "/predict", RECORD) == 200, 30)
        for _ in range(20):
            assert _post(url + "/predict", RECORD) == 200
        assert process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        (disk / "filler").unlink()  # space again: what waited is written, with its count

        def noted() -> bool:
            events = EventStore(root / ".mlmedic" / "events.db").query(kind="component")
            return any(e.action == "event-store restored" for e in events)

        assert _until(noted, 60), (tmp_path / "serve.log").read_text()[-3000:]
        assert process.poll() is None
        assert not list((root / ".mlmedic").glob("supervisor.*.tmp"))
    finally:
        if process is not None:
            stop_server(process)
        log.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_under_socket_activation_a_supervisor_restart_refuses_no_connection(
    served_project: Path,
) -> None:
    """#21 item 10: the port held by a process manager (LISTEN_FDS, as systemd passes it): kill
    -9 the supervisor and start it again — connections wait in the backlog meanwhile, and none is
    refused."""
    import socket
    import threading
    import urllib.error
    import urllib.request

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    log = (served_project / "activated.log").open("ab")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    # bash, not sh: dash redirects only single-digit file descriptors
    script = 'exec 3<&"$2"; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m mlmedic serve -C "$1"'

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["bash", "-c", script, sys.executable, str(served_project), str(listener.fileno())],
            pass_fds=(listener.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    outcomes: list[str] = []
    stop = threading.Event()

    def client() -> None:
        request = urllib.request.Request(
            url + "/predict",
            data=json.dumps(RECORD).encode(),
            headers={"content-type": "application/json"},
        )
        while not stop.is_set():
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    outcomes.append(str(answer.status))
            except urllib.error.URLError as exc:
                refused = isinstance(exc.reason, ConnectionRefusedError)
                outcomes.append("refused" if refused else type(exc.reason).__name__)
            except (ConnectionError, OSError) as exc:
                outcomes.append("refused" if isinstance(exc, ConnectionRefusedError) else "other")

    first = start()
    second = None
    thread = threading.Thread(target=client, daemon=True)
    try:
        assert wait_ready(url, 90), (served_project / "activated.log").read_text()[-2000:]
        thread.start()
        assert _until(lambda: outcomes.count("200") >= 20, 30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        served_before = outcomes.count("200")
        second = start()
        assert _until(lambda: outcomes.count("200") >= served_before + 20, 90)
    finally:
        stop.set()
        try:
            if thread.ident is not None:
                thread.join(timeout=70)
            for process in (first, second):
                if process is not None and process.poll() is None:
                    stop_server(process)
        finally:
            log.close()
            listener.close()
    assert "refused" not in outcomes, sorted(set(outcomes))
