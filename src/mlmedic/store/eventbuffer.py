"""An event store for the parts that must never stop: it buffers on disk while SQLite cannot write.

The server, its supervisor and the registry watcher record what they do, but the event store
being slow, locked, deleted or corrupt must never stop serving or supervising. So their writes go
through ``ResilientEventStore``:

- a write waits at most ``timeout_s`` for SQLite; on failure the event goes to a bounded on-disk
  buffer (``events.db.buffer.jsonl`` beside the store, shared by every process of the project),
  and the store is not tried again for ``retry_seconds`` (so callers stay fast);
- the next write or ``flush()`` that reaches the store writes the buffer first, in order, in one
  transaction, then records one ``component`` event saying how long the store was unavailable
  and how many events were written late (or dropped, once the buffer was full);
- a store that was deleted is recreated; a store that is corrupt is moved aside
  (``events.db.corrupt-<time>``) and a fresh one started, with an event that says where the old
  one went.

Reads (``query``/``count``) still raise ``EventStoreError``: the callers that read (metrics, the
dashboard) degrade on their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from mlmedic.core.clock import Clock
from mlmedic.core.errors import EventStoreError
from mlmedic.store.events import Event, EventKind, EventSpan, EventStore, Outcome
from mlmedic.store.events import original_error as _orig
from mlmedic.store.events.kinds import timed

log = logging.getLogger("mlmedic.store.events")

BUFFER_LIMIT_BYTES = 16 * 1024 * 1024
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class EventBuffer:
    """Events waiting for the store: one JSON line each, appended under an exclusive file lock."""

    def __init__(self, path: Path, *, limit_bytes: int = BUFFER_LIMIT_BYTES) -> None:
        self.path = Path(path)
        self.limit_bytes = limit_bytes

    @contextlib.contextmanager
    def locked(self) -> Iterator[Any]:
        """The buffer file opened for reading and appending, under an exclusive lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, row: tuple[Any, ...], cause: str) -> bool:
        """Buffer one event; False (nothing written) when the buffer is full, or when the disk
        refuses the line (full, read-only, failing): the caller counts it as dropped, and a
        half-written line is cut off again."""
        line = json.dumps({"row": list(row), "cause": cause}, default=str) + "\n"
        try:
            with self.locked() as handle:
                end = handle.seek(0, os.SEEK_END)
                if end + len(line) > self.limit_bytes:
                    return False
                try:
                    handle.write(line)
                    handle.flush()
                except OSError:
                    with contextlib.suppress(OSError):
                        handle.truncate(end)
                    raise
        except OSError as exc:
            log.warning(
                "event buffer %s: cannot write (%s); the event is counted as dropped",
                self.path,
                exc,
            )
            return False
        return True

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False


class ResilientEventStore:
    """An ``EventStore``, wrapped: its writes never raise (see the module docstring); reads go
    to the wrapped store once it follows a deleted or replaced file."""

    def __init__(
        self,
        target: str | Path,
        *,
        clock: Clock | None = None,
        timeout_s: float = 0.5,
        retry_seconds: float = 1.0,
        buffer_limit_bytes: int = BUFFER_LIMIT_BYTES,
        buffer_path: Path | None = None,
    ) -> None:
        # opened on first use: a store that cannot open yet is a state to buffer through
        self.store = EventStore(target, clock=clock, timeout_s=timeout_s, open_now=False)
        if buffer_path is None:
            if self.store.path is None:
                raise ValueError("a Postgres event store needs a local buffer_path")
            buffer_path = self.store.path.with_name(self.store.path.name + ".buffer.jsonl")
        self.retry_seconds = retry_seconds
        self._inode: int | None = None
        self._write_lock = threading.Lock()
        self.buffer = EventBuffer(buffer_path, limit_bytes=buffer_limit_bytes)
        self.down_since: float | None = None  # wall-clock time of the first failed write
        self.cause = ""
        self.dropped = 0
        self.buffered = 0
        self._next_try = 0.0
        self._notes: list[tuple[str, str, dict[str, Any]]] = []

    # ------------------------------------------------------------------ what it wraps
    @property
    def clock(self) -> Clock:
        return self.store.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.store.clock = clock

    @property
    def where(self) -> str:
        return self.store.where

    @property
    def url(self) -> str:
        return self.store.url

    @property
    def sqlite(self) -> bool:
        return self.store.sqlite

    @property
    def path(self) -> Path | None:
        return self.store.path

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ResilientEventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    @property
    def available(self) -> bool:
        """False while writes are going to the buffer."""
        return self.down_since is None

    def status(self) -> dict[str, Any]:
        """For ``/ready`` and ``/metrics``: is the store writable, and what waits in the buffer."""
        return {
            "available": self.available,
            "down_since": self.down_since,
            "cause": self.cause,
            "buffered": self.buffered,
            "dropped": self.dropped,
            "buffer_pending": self.buffer.pending(),
        }

    def detach(self) -> None:
        """Close the connection (before a fork: SQLite connections must not cross one)."""
        self.store.close()
        self._inode = None

    # ------------------------------------------------------------------ reading
    def _opened(self) -> EventStore:
        """The wrapped store, open; on SQLite, reopened when its file was deleted or replaced
        under it (a fresh store is started, and a note says so)."""
        path = self.store.path
        if path is None:
            self.store.open()
            return self.store
        try:
            inode: int | None = path.stat().st_ino
        except OSError:
            inode = None
        if self.store.opened and inode != self._inode:
            self.store.close()
            self._notes.append(
                (
                    "event-store recreated",
                    f"{path} was deleted or replaced while in use; a new store was started",
                    {"path": str(path)},
                )
            )
        if not self.store.opened:
            if inode is None:
                _set_aside_stale_journal(path)
            self.store.open()
            self._inode = path.stat().st_ino
        return self.store

    def query(self, **filters: Any) -> list[Event]:
        return self._opened().query(**filters)

    def last(self, kind: str, *, outcome: str | None = None) -> Event | None:
        return self._opened().last(kind, outcome=outcome)

    def counts(self) -> dict[tuple[str, str], int]:
        return self._opened().counts()

    def count(self, kind: str | None = None) -> int:
        return self._opened().count(kind)

    def select(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._opened().select(sql, params)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._opened().reading()

    def schema_version(self) -> int:
        return self._opened().schema_version()

    def claim(self, name: str, *, seconds: float, holder: str | None = None) -> bool:
        return self._opened().claim(name, seconds=seconds, holder=holder)

    def hold(
        self,
        name: str,
        what: str,
        *,
        wait_seconds: float = 600.0,
        say: Callable[[str], None] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        return self._opened().hold(name, what, wait_seconds=wait_seconds, say=say)

    def export(self, directory: str | Path, **options: Any) -> dict[str, int]:
        return self._opened().export(directory, **options)

    def _quarantine(self, exc: BaseException) -> bool:
        """Move a corrupt store aside (once, whichever process sees it first); True if moved."""
        path = self.store.path
        if path is None:
            return False  # a database server repairs itself; nothing to move aside
        with self.buffer.locked():
            if not _is_corrupt_file(path):
                return False  # already replaced by another process, or not corrupt after all
            stamp = time.strftime("%Y%m%dT%H%M%S")
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(str(path) + suffix)
                if source.exists():
                    source.replace(Path(str(target) + suffix))
        self.store.close()
        self._notes.append(
            (
                "event-store quarantined",
                f"{path} was corrupt ({exc}); moved aside to {target.name} and a new store started",
                {"path": str(path), "moved_to": str(target), "error": str(exc)},
            )
        )
        return True

    # ------------------------------------------------------------------ writing
    def record(
        self,
        kind: str,
        action: str,
        outcome: str = Outcome.SUCCESS,
        *,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        model_version: str | int | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
    ) -> Event:
        """As ``EventStore.record``, but a store that cannot take the event now gets it later,
        from the buffer (the event's id is then 0). An event that is not one (an unknown kind)
        still raises."""
        row, payload = self.store.make_row(
            kind, action, outcome, message, details, model_version, started_at, ended_at
        )
        return Event(self._store((*row, payload)), *row, details=json.loads(payload))

    def span(
        self, kind: str, action: str, *, model_version: str | int | None = None
    ) -> contextlib.AbstractContextManager[EventSpan]:
        """As ``EventStore.span``, recorded through this store's ``record``."""
        return timed(self.record, self.clock, kind, action, model_version)

    def _store(self, row: tuple[Any, ...]) -> int:
        """Write the row, or buffer it when the store cannot take it now (id 0)."""
        with self._write_lock:
            if time.monotonic() >= self._next_try:
                try:
                    ids = self._write([row])
                    return ids[0]
                except (EventStoreError, SQLAlchemyError, sqlite3.Error, OSError) as exc:
                    self._failed(exc)
            if self.buffer.append(row, self.cause):
                self.buffered += 1
            else:
                self.dropped += 1
        return 0

    def flush(self) -> bool:
        """Write what waits in the buffer if the store answers; True when nothing waits."""
        with self._write_lock:
            if time.monotonic() < self._next_try:
                return False
            try:
                self._write([])
                return True
            except (EventStoreError, SQLAlchemyError, sqlite3.Error, OSError) as exc:
                self._failed(exc)
                return False

    def prune(self, before: float) -> int:
        """As ``EventStore.prune``, but a store that cannot answer now is pruned next time."""
        try:
            return self._opened().prune(before)
        except (EventStoreError, SQLAlchemyError, sqlite3.Error, OSError):
            return 0

    def _write(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Buffer first, then ``rows``; then the notes about what happened to the store."""
        for attempt in range(2):
            try:
                if self.buffer.pending():
                    self._drain()
                ids = self._opened().insert(rows) if rows else []
                break
            except (SQLAlchemyError, sqlite3.DatabaseError, EventStoreError) as exc:
                if attempt or not _corrupt(exc) or not self._quarantine(exc):
                    raise
        if self.down_since is not None:
            self._restored()
        self._write_notes()
        return ids

    def _drain(self) -> None:
        with self.buffer.locked() as handle:
            handle.seek(0)
            lines = [line for line in handle.read().splitlines() if line.strip()]
            if not lines:
                return
            rows, causes, first = [], [], None
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash mid-write
                rows.append(tuple(entry["row"]))
                causes.append(entry.get("cause", ""))
                first = rows[0][4] if first is None else first
            self._opened().insert(rows)
            handle.truncate(0)
        self._notes.append(
            (
                "event-store buffer written",
                f"{len(rows)} event(s) buffered while the event store was unavailable "
                f"({causes[0] if causes else 'unknown cause'}) are now stored",
                {
                    "written": len(rows),
                    "first_buffered_at": first,
                    "cause": causes[0] if causes else "",
                },
            )
        )

    def _restored(self) -> None:
        assert self.down_since is not None
        now = self.clock.now()
        seconds = max(0.0, now - self.down_since)
        self._notes.append(
            (
                "event-store restored",
                f"event store unavailable for {seconds:.1f}s ({self.cause}); "
                f"{self.buffered} event(s) buffered, {self.dropped} dropped",
                {
                    "unavailable_from": self.down_since,
                    "restored_at": now,
                    "unavailable_seconds": seconds,
                    "cause": self.cause,
                    "buffered": self.buffered,
                    "dropped": self.dropped,
                    "pid": os.getpid(),
                },
            )
        )
        self.down_since, self.cause, self.buffered, self.dropped = None, "", 0, 0

    def _write_notes(self) -> None:
        """Notes about the store itself; by now the caller's events are committed, so a failure
        here must not make them look unwritten (they would be buffered and stored twice): the
        notes wait for the next write instead."""
        if not self._notes:
            return
        rows = []
        for action, message, details in self._notes:
            row, payload = self.store.make_row(
                EventKind.COMPONENT, action, Outcome.WARNING, message, details, None, None, None
            )
            rows.append((*row, payload))
        try:
            self._opened().insert(rows)
        except (SQLAlchemyError, sqlite3.Error, EventStoreError, OSError) as exc:
            log.warning("event store: notes deferred: %s", exc)
            return
        self._notes = []

    def _failed(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = self.clock.now()
            self.cause = _describe(exc)
            log.warning("event store unavailable, buffering events: %s", self.cause)
        self._next_try = time.monotonic() + self.retry_seconds


def _set_aside_stale_journal(path: Path) -> None:
    """A deleted store's ``-wal``/``-shm`` must not be replayed into the new, empty one."""
    stamp = f"stale-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    for suffix in ("-wal", "-shm"):
        stale = Path(str(path) + suffix)
        with contextlib.suppress(OSError):
            stale.replace(Path(f"{stale}.{stamp}"))


def _describe(exc: BaseException) -> str:
    inner = _orig(exc)
    text = str(inner).strip()
    return f"{type(inner).__name__}: {text.splitlines()[0] if text else ''}"


def _corrupt(exc: BaseException) -> bool:
    return getattr(_orig(exc), "sqlite_errorname", "") in _CORRUPT


def _is_corrupt_file(path: Path) -> bool:
    """Does a fresh connection find ``path`` unreadable as a database?"""
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(path, timeout=0.5)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return _corrupt(exc)
    return False
