from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlmedic.core.clock import SimulatedClock
from mlmedic.core.errors import EventStoreError
from mlmedic.store.events import EXPORT_FILES, EventKind, EventStore, Outcome


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    clock = SimulatedClock(start=1_000_000.0)
    with EventStore(tmp_path / "events.db", clock=clock) as events:
        yield events


def test_record_and_query_round_trip(store: EventStore) -> None:
    event = store.record(
        EventKind.ROLLBACK,
        "auto-rollback",
        Outcome.SUCCESS,
        message="Model accuracy 0.65 below threshold 0.70",
        details={"from_version": 3, "to_version": 2},
        model_version=2,
    )
    [stored] = store.query(kind="rollback")
    assert stored == event
    assert stored.details == {"from_version": 3, "to_version": 2}
    assert stored.model_version == "2"
    assert stored.started_at == stored.ended_at == 1_000_000.0


def test_store_uses_wal_mode(store: EventStore) -> None:
    import sqlite3

    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_kind_or_outcome_is_rejected(store: EventStore) -> None:
    with pytest.raises(ValueError):
        store.record("coffee_break", "x")
    with pytest.raises(ValueError):
        store.record("data_fix", "x", "meh")


def test_span_times_the_block_and_records_failures(store: EventStore) -> None:
    clock = store.clock
    assert isinstance(clock, SimulatedClock)
    with store.span(EventKind.RETRAIN, "retrain on drift") as span:
        clock.advance(42)
        span.details["drift_score"] = 0.82
    assert span.event is not None
    assert span.event.duration_s == 42
    assert span.event.details == {"drift_score": 0.82}
    with pytest.raises(RuntimeError), store.span(EventKind.RECOVERY, "restart"):
        raise RuntimeError("port in use")
    failed = store.last("recovery")
    assert failed is not None
    assert failed.outcome == "failure"
    assert "port in use" in failed.message


def test_query_filters_by_kind_time_and_outcome(store: EventStore) -> None:
    clock = store.clock
    assert isinstance(clock, SimulatedClock)
    store.record("data_fix", "a", "success")
    clock.advance(3600)
    store.record("data_fix", "b", "failure")
    store.record("retrain", "c", "success")
    assert [e.action for e in store.query(kind="data_fix")] == ["a", "b"]
    assert [e.action for e in store.query(since=clock.now() - 10)] == ["b", "c"]
    assert [e.action for e in store.query(outcome="failure")] == ["b"]
    assert [e.action for e in store.query(kind=("data_fix", "retrain"), limit=2, newest_first=True)]
    assert store.last("data_fix").action == "b"  # type: ignore[union-attr]
    assert store.count() == 3
    assert store.count("retrain") == 1


def test_a_locked_store_makes_a_writer_wait_and_say_so(tmp_path: Path) -> None:
    import sqlite3
    import threading

    told: list[str] = []
    store = EventStore(tmp_path / "events.db", timeout_s=5.0, on_wait=told.append)
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.5, lambda: blocker.execute("COMMIT")).start()
    event = store.record("alert", "waited")
    assert event.id > 0
    assert len(told) == 1 and "another process holds its write lock" in told[0]
    blocker.close()


def test_export_writes_the_seed_logs(store: EventStore, tmp_path: Path) -> None:
    store.record("data_fix", "fix", "success")
    store.record("rollback", "rollback", "success", model_version=1)
    store.record("retrain", "retrain", "success")
    store.record("alert", "drift", "warning")
    counts = store.export(tmp_path / "logs")
    assert set(counts) == set(EXPORT_FILES)
    assert counts == {
        "data_fix_log.json": 1,
        "recovery_log.json": 0,
        "rollback_log.json": 1,
        "retraining_log.json": 1,
        "monitoring_log.json": 0,
        "alert_log.json": 1,
    }
    rollback = json.loads((tmp_path / "logs" / "rollback_log.json").read_text())
    assert rollback[0]["kind"] == "rollback"
    assert rollback[0]["model_version"] == "1"
    assert rollback[0]["timestamp"].startswith("1970-01-12T")
    assert json.loads((tmp_path / "logs" / "recovery_log.json").read_text()) == []


def test_unopenable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EventStoreError, match="cannot open the event store"):
        EventStore(blocker / "events.db")


_WRITER = """
import sys
from mlmedic.store.events import EventStore
store = EventStore(sys.argv[1])
for i in range(500):
    store.record("data_fix", f"writer-{sys.argv[2]}", details={"i": i})
store.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_four_processes_writing_at_once_lose_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """4 processes x 500 events -> 2,000 events, each once (a real Postgres server too)."""
    path = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "events.db"
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n)]) for n in range(4)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    with EventStore(path) as store:
        events = store.query()
    assert len(events) == 2000
    seen = {(e.action, e.details["i"]) for e in events}
    assert seen == {(f"writer-{n}", i) for n in range(4) for i in range(500)}
    assert len({e.id for e in events}) == 2000


def test_an_undefined_metric_is_stored_as_missing_not_a_failed_write(tmp_path: Path) -> None:
    """ROC AUC on a holdout of one class is NaN: the train event must still be written."""
    with EventStore(tmp_path / "events.db") as store:
        store.record("train", "train", "success", details={"metrics": {"roc_auc": float("nan")}})
        assert store.last("train").details["metrics"]["roc_auc"] is None  # type: ignore[union-attr]


def test_an_sqlite_without_returning_still_gets_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.35 (Debian 11, Ubuntu 20.04) has no RETURNING: rows go in one at a time,
    in one transaction, with their ids."""
    with EventStore(tmp_path / "events.db") as store:
        monkeypatch.setattr(store.conn.dialect, "insert_returning", False)
        ids = store.insert(
            [
                store.make_row("alert", "a", "warning", "m", {"i": i}, None, None, None)[0]
                + ("{}",)
                for i in range(3)
            ]
        )
        assert ids == [1, 2, 3] and store.count("alert") == 3
