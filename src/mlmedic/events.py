"""The event store: one durable record of every check, fix, rollback, retrain and recovery.

SQLite in WAL mode, so the server, the supervisor, the monitor and the CLI can write at once; each
event is one short transaction. The schema is plain SQL (one ``events`` table) so a PostgreSQL
database could hold it instead. Times are seconds since the epoch, read from an injected ``Clock``.

Examples:
    >>> import tempfile, pathlib
    >>> store = EventStore(pathlib.Path(tempfile.mkdtemp()) / "events.db")
    >>> event = store.record("data_fix", "fix-data", "success", details={"rows": 10})
    >>> [e.kind for e in store.query(kind="data_fix")]
    ['data_fix']
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlmedic.clock import Clock, SystemClock, to_iso
from mlmedic.errors import EventStoreError, ProjectError


class EventKind(StrEnum):
    """What an event is about."""

    DATA_CHECK = "data_check"
    DATA_FIX = "data_fix"
    BACKUP = "backup"
    TRAIN = "train"
    REGISTER = "register"
    GATE = "gate"
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    ALIAS = "alias"
    DRIFT_CHECK = "drift_check"
    PERFORMANCE_CHECK = "performance_check"
    RETRAIN = "retrain"
    ALERT = "alert"
    RECOVERY = "recovery"
    MONITOR = "monitor"
    COMPONENT = "component"  # a part of mlmedic itself degraded or healed (event store, ...)


class Outcome(StrEnum):
    """How it ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"
    WARNING = "warning"


# The seed's JSON logs: file name -> the event kinds it holds.
EXPORT_FILES: dict[str, tuple[EventKind, ...]] = {
    "data_fix_log.json": (EventKind.DATA_FIX,),
    "recovery_log.json": (EventKind.RECOVERY,),
    "rollback_log.json": (EventKind.ROLLBACK,),
    "retraining_log.json": (EventKind.RETRAIN,),
    "monitoring_log.json": (EventKind.MONITOR, EventKind.DRIFT_CHECK, EventKind.PERFORMANCE_CHECK),
    "alert_log.json": (EventKind.ALERT,),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    started_at    REAL    NOT NULL,
    ended_at      REAL    NOT NULL,
    duration_s    REAL    NOT NULL,
    model_version TEXT,
    message       TEXT    NOT NULL DEFAULT '',
    details       TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_kind_time ON events (kind, started_at);
CREATE INDEX IF NOT EXISTS events_time ON events (started_at);
CREATE INDEX IF NOT EXISTS events_kind_outcome ON events (kind, outcome);
-- covers the dashboard's windowed aggregates (outcomes, actions, durations by kind and time)
CREATE INDEX IF NOT EXISTS events_kind_time_cover
    ON events (kind, started_at, outcome, action, duration_s);
"""


# kind, action, outcome, started_at, ended_at, duration_s, model_version, message
Row = tuple[str, str, str, float, float, float, str | None, str]

_INSERT = (
    "INSERT INTO events (kind, action, outcome, started_at, ended_at, duration_s,"
    " model_version, message, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Event:
    """One recorded action."""

    id: int
    kind: str
    action: str
    outcome: str
    started_at: float
    ended_at: float
    duration_s: float
    model_version: str | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with ISO-8601 times beside the epoch seconds."""
        return {
            "id": self.id,
            "kind": self.kind,
            "action": self.action,
            "outcome": self.outcome,
            "timestamp": to_iso(self.started_at),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "model_version": self.model_version,
            "message": self.message,
            "details": self.details,
        }


def _event(row: tuple[Any, ...]) -> Event:
    (event_id, kind, action, outcome, started, ended, duration, version, message, details) = row
    return Event(
        event_id,
        kind,
        action,
        outcome,
        started,
        ended,
        duration,
        version,
        message,
        json.loads(details),
    )


class EventSpan:
    """An action being timed by ``EventStore.span``; set ``outcome``/``message``/``details``."""

    def __init__(self, kind: str, action: str, model_version: str | None) -> None:
        self.kind = kind
        self.action = action
        self.model_version = model_version
        self.outcome: str = Outcome.SUCCESS
        self.message = ""
        self.details: dict[str, Any] = {}
        self.event: Event | None = None


class EventStore:
    """Append-only typed events in SQLite (WAL); safe for several processes writing at once."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        timeout_s: float = 30.0,
        on_wait: Callable[[str], None] | None = None,
    ):
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self.timeout_s = timeout_s
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        """A new connection to ``path`` (the file and schema are created when missing)."""
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(min(self.timeout_s, 1.0) * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise EventStoreError(f"{self.path}: cannot open the event store ({exc})") from exc
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
        """Append one event and return it; times default to now (an instant event)."""
        row, payload = self._row(
            kind, action, outcome, message, details, model_version, started_at, ended_at
        )
        return Event(self._store((*row, payload)), *row, details=json.loads(payload))

    def _store(self, row: tuple[Any, ...]) -> int:
        """Write one row; its id (``EventStoreError`` if the store cannot take it)."""
        event_id: int
        try:
            [event_id] = self._insert([row])
        except sqlite3.Error as exc:
            raise EventStoreError(f"{self.path}: cannot write an event ({exc})") from exc
        return event_id

    def _row(
        self,
        kind: str,
        action: str,
        outcome: str,
        message: str,
        details: Mapping[str, Any] | None,
        model_version: str | int | None,
        started_at: float | None,
        ended_at: float | None,
    ) -> tuple[Row, str]:
        """The stored columns of one event (without the id), and its details as JSON."""
        kind, outcome = EventKind(kind).value, Outcome(outcome).value
        ended = self.clock.now() if ended_at is None else ended_at
        started = ended if started_at is None else started_at
        version = None if model_version is None else str(model_version)
        payload = json.dumps(_finite(dict(details or {})), default=str, allow_nan=False)
        row = (kind, action, outcome, started, ended, max(0.0, ended - started), version, message)
        return row, payload

    def _insert(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert rows (columns as in ``_INSERT``) in one transaction; their ids. While another
        process holds the write lock, wait up to ``timeout_s``, saying so once (``on_wait``)."""
        deadline = time.monotonic() + self.timeout_s
        told = False
        while True:
            try:
                return self._insert_once(rows)
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
                if not busy or time.monotonic() >= deadline:
                    raise
                if not told and self.on_wait is not None:
                    told = True
                    self.on_wait(
                        f"waiting for the event store {self.path}: another process holds its "
                        f"write lock (giving up after {self.timeout_s:.0f}s)"
                    )

    def _insert_once(self, rows: list[tuple[Any, ...]]) -> list[int]:
        ids: list[int] = []
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    cursor = conn.execute(_INSERT, row)
                    assert cursor.lastrowid is not None
                    ids.append(cursor.lastrowid)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return ids

    @contextmanager
    def span(
        self, kind: str, action: str, *, model_version: str | int | None = None
    ) -> Iterator[EventSpan]:
        """Time an action and record it when the block ends; an exception records a failure."""
        version = None if model_version is None else str(model_version)
        span = EventSpan(kind, action, version)
        started = self.clock.now()
        try:
            yield span
        except BaseException as exc:
            span.outcome = Outcome.FAILURE
            span.message = span.message or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            span.event = self.record(
                span.kind,
                span.action,
                span.outcome,
                message=span.message,
                details=span.details,
                model_version=span.model_version,
                started_at=started,
            )

    def query(
        self,
        *,
        kind: str | tuple[str, ...] | None = None,
        since: float | None = None,
        until: float | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events matching every given filter, oldest first unless ``newest_first``."""
        clauses: list[str] = []
        params: list[Any] = []
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(EventKind(k).value for k in kinds)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("started_at < ?")
            params.append(until)
        if outcome is not None:
            clauses.append("outcome = ?")
            params.append(Outcome(outcome).value)
        sql = "SELECT * FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY started_at {'DESC' if newest_first else 'ASC'}, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        try:
            with self._lock:
                rows = self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EventStoreError(f"{self.path}: cannot read events ({exc})") from exc
        return [_event(row) for row in rows]

    def last(self, kind: str, *, outcome: str | None = None) -> Event | None:
        """The most recent event of ``kind`` (optionally with that outcome), or None."""
        events = self.query(kind=kind, outcome=outcome, limit=1, newest_first=True)
        return events[0] if events else None

    def counts(self) -> dict[tuple[str, str], int]:
        """Events by (kind, outcome): one aggregate query over the (kind, outcome) index."""
        try:
            with self._lock:
                rows = self.conn.execute(
                    "SELECT kind, outcome, COUNT(*) FROM events GROUP BY kind, outcome"
                ).fetchall()
        except sqlite3.Error as exc:
            raise EventStoreError(f"{self.path}: cannot read events ({exc})") from exc
        return {(kind, outcome): int(n) for kind, outcome, n in rows}

    def select(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only ``SELECT`` over ``events`` (aggregates for the dashboard:
        ``COUNT``/``AVG`` by kind and outcome, ``json_extract`` of a detail field)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise ValueError("select() runs SELECT statements only")
        try:
            with self._lock:
                return list(self.conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise EventStoreError(f"{self.path}: cannot read events ({exc})") from exc

    def count(self, kind: str | None = None) -> int:
        sql, params = "SELECT COUNT(*) FROM events", []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(EventKind(kind).value)
        try:
            with self._lock:
                return int(self.conn.execute(sql, params).fetchone()[0])
        except sqlite3.Error as exc:
            raise EventStoreError(f"{self.path}: cannot read events ({exc})") from exc

    def prune(self, before: float) -> int:
        """Delete events that started before ``before`` (``logging.retention_days``); how many.
        Long-running writers (the monitor, the supervisor) call it; reading never prunes."""
        try:
            with self._lock:
                cursor = self.conn.execute("DELETE FROM events WHERE started_at < ?", (before,))
        except sqlite3.Error as exc:
            raise EventStoreError(f"{self.path}: cannot prune events ({exc})") from exc
        return int(cursor.rowcount or 0)

    def export(
        self,
        directory: str | Path,
        *,
        kind: str | None = None,
        since: float | None = None,
        names: Mapping[str, str] | None = None,
    ) -> dict[str, int]:
        """Write the seed-style JSON logs (one array per file) into ``directory``; return counts.
        With ``kind``, only the file that holds that kind; with ``since``, only newer events;
        ``names`` renames files (``logging.*_log_path`` in the config)."""
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise ProjectError(f"{target}: exists and is not a directory")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"{target}: cannot create it ({exc.strerror})") from None
        counts: dict[str, int] = {}
        for name, kinds in EXPORT_FILES.items():
            chosen = kinds if kind is None else tuple(k for k in kinds if k == kind)
            if not chosen:
                continue
            events = [event.to_dict() for event in self.query(kind=chosen, since=since)]
            written = (names or {}).get(name, name)
            (target / written).write_text(json.dumps(events, indent=2) + "\n", encoding="utf-8")
            counts[written] = len(events)
        return counts


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: a metric that is undefined (ROC AUC
    on one class) is recorded as missing, never as invalid JSON or a failed write.

    >>> _finite({"auc": float("nan"), "rows": [1.0, float("inf")]})
    {'auc': None, 'rows': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return _finite(value.item())  # numpy scalars
        except (TypeError, ValueError):
            return value
    return value
