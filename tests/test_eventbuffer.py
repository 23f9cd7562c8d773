"""The resilient event store: locked, deleted and corrupt stores never stop a writer."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

from mlmedic.store.eventbuffer import ResilientEventStore
from mlmedic.store.events import EventStore
from served import wait_until


def _actions(path: Path) -> list[tuple[str, str]]:
    with EventStore(path) as store:
        return [(e.kind, e.action) for e in store.query()]


def test_a_locked_store_buffers_quickly_and_writes_later_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    store = ResilientEventStore(path, timeout_s=0.2, retry_seconds=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        first = store.record("recovery", "during-lock-1")
        second = store.record("recovery", "during-lock-2")
        took = time.monotonic() - started
        assert first.id == 0 and second.id == 0  # buffered, not stored
        assert not store.available and "locked" in store.status()["cause"]
        assert took < 5  # one short wait, then straight to the buffer
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert wait_until(store.flush, 10)
    actions = _actions(path)
    assert actions[:2] == [("recovery", "during-lock-1"), ("recovery", "during-lock-2")]
    restored = [a for k, a in actions if k == "component"]
    assert "event-store restored" in restored and "event-store buffer written" in restored
    with EventStore(path) as read:
        note = next(e for e in read.query(kind="component") if e.action == "event-store restored")
    assert note.details["buffered"] == 2 and note.details["unavailable_seconds"] >= 0
    assert store.available and not store.buffer.pending()


def test_a_deleted_store_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = ResilientEventStore(path)
    store.record("recovery", "before")
    path.unlink()
    event = store.record("recovery", "after")
    assert event.id > 0
    assert ("recovery", "after") in _actions(path)
    assert ("component", "event-store recreated") in _actions(path)


def test_a_corrupt_store_is_moved_aside_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a database" * 500)
    store = ResilientEventStore(path)
    event = store.record("recovery", "after-corruption")
    assert event.id > 0
    moved = list(tmp_path.glob("events.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    actions = _actions(path)
    assert ("recovery", "after-corruption") in actions
    assert ("component", "event-store quarantined") in actions


def test_the_buffer_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir-is-a-file"
    path.write_text("x")  # a file where the store's folder should be: the store cannot open
    store = ResilientEventStore(path / "events.db", buffer_limit_bytes=2000, retry_seconds=60)
    store.buffer.path = tmp_path / "buffer.jsonl"
    for number in range(100):
        store.record("alert", f"event {number}", message="x" * 50)
    assert 0 < store.buffered < 100 and store.dropped == 100 - store.buffered
    assert (tmp_path / "buffer.jsonl").stat().st_size <= 2000


def _writer(path: str, count: int) -> None:
    store = ResilientEventStore(Path(path), timeout_s=0.05, retry_seconds=0.01)
    for number in range(count):
        store.record("data_fix", f"{os.getpid()}-{number}")
    assert wait_until(store.flush, 30)


def test_four_writers_under_a_flapping_lock_lose_nothing(tmp_path: Path) -> None:
    """4 processes x 200 events while another connection takes the write lock on and off:
    every event is stored exactly once."""
    path = tmp_path / "events.db"
    EventStore(path).close()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(path), 200)) for _ in range(4)]
    for writer in writers:
        writer.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    while any(w.is_alive() for w in writers):
        blocker.execute("BEGIN EXCLUSIVE")
        time.sleep(0.05)
        blocker.execute("COMMIT")
        time.sleep(0.02)
    blocker.close()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    ResilientEventStore(path).flush()
    stored = [a for k, a in _actions(path) if k == "data_fix"]
    assert len(stored) == 800 and len(set(stored)) == 800


def test_the_resilient_store_wraps_an_event_store_and_opens_it_on_first_use(
    tmp_path: Path,
) -> None:
    """Composition: the resilient store holds a plain ``EventStore`` (nothing of it rebuilt by
    hand), opens it on first use, and records and reads through it."""
    path = tmp_path / "events.db"
    resilient = ResilientEventStore(path)
    assert isinstance(resilient.store, EventStore) and not isinstance(resilient, EventStore)
    assert not resilient.store.opened and not path.exists()
    with resilient.span("component", "started") as span:
        span.details["by"] = "test"
    assert _actions(path) == [("component", "started")]
    assert resilient.last("component").details == {"by": "test"}  # type: ignore[union-attr]
    resilient.close()
