"""The event store: one durable record of every check, fix, rollback, retrain and recovery.

SQLite in WAL mode by default (one file in the project), so the server, the supervisor, the monitor
and the CLI can write at once; or PostgreSQL (``MLMEDIC_EVENTS_URL`` / ``events.url``), shared by
every host of a team. One implementation over SQLAlchemy Core for both: the same table, indexes,
kinds and exports; the schema is created on first use and carries a version (``mlmedic_meta``).
Each event is one short transaction. ``claim`` gives atomic, expiring claims (one monitoring pass
per interval, one retrain per cooldown) across every process sharing the store. Times are seconds
since the epoch, read from an injected ``Clock``.

Examples:
    >>> import tempfile, pathlib
    >>> store = EventStore(pathlib.Path(tempfile.mkdtemp()) / "events.db")
    >>> event = store.record("data_fix", "fix-data", "success", details={"rows": 10})
    >>> [e.kind for e in store.query(kind="data_fix")]
    ['data_fix']
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from mlmedic.clock import Clock, SystemClock, to_iso
from mlmedic.errors import EventStoreError, ProjectBusyError, ProjectError


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

SCHEMA_VERSION = 1
_SCHEMA_LOCK = 0x6D6C6D65  # the advisory lock that serialises creating the schema on Postgres

_metadata = sa.MetaData()
# ``id`` is BIGSERIAL on Postgres and INTEGER PRIMARY KEY AUTOINCREMENT on SQLite (the table an
# earlier mlmedic created in SQLite is this table; its indexes keep their names).
events_table = sa.Table(
    "events",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("started_at", sa.Float(precision=53), nullable=False),
    sa.Column("ended_at", sa.Float(precision=53), nullable=False),
    sa.Column("duration_s", sa.Float(precision=53), nullable=False),
    sa.Column("model_version", sa.Text),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    sa.Index("events_kind_time", "kind", "started_at"),
    sa.Index("events_time", "started_at"),
    sa.Index("events_kind_outcome", "kind", "outcome"),
    # covers the dashboard's windowed aggregates (outcomes, actions, durations by kind and time)
    sa.Index("events_kind_time_cover", "kind", "started_at", "outcome", "action", "duration_s"),
    sqlite_autoincrement=True,
)
# what this store's schema is: ``schema_version`` (refused when newer than this mlmedic's)
meta_table = sa.Table(
    "mlmedic_meta",
    _metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
# atomic claims shared by every process (and every host, on Postgres): see ``EventStore.claim``
claims_table = sa.Table(
    "mlmedic_claims",
    _metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("claimed_at", sa.Float(precision=53), nullable=False),
    sa.Column("expires_at", sa.Float(precision=53), nullable=False),
)

_COLUMNS = (
    "kind",
    "action",
    "outcome",
    "started_at",
    "ended_at",
    "duration_s",
    "model_version",
    "message",
    "details",
)

# kind, action, outcome, started_at, ended_at, duration_s, model_version, message
Row = tuple[str, str, str, float, float, float, str | None, str]

_DETAIL = re.compile(r"json_extract\(details, '\$\.(\w+)'\)")


def events_url(target: str | Path) -> str:
    """The SQLAlchemy URL of an event store given as a path or a URL: a path is SQLite;
    ``postgresql://`` means psycopg 3.

    >>> events_url("/p/.mlmedic/events.db")
    'sqlite:////p/.mlmedic/events.db'
    >>> events_url("postgresql://u:pw@db:5432/mlmedic")
    'postgresql+psycopg://u:pw@db:5432/mlmedic'
    """
    text = str(target)
    if "://" not in text:
        return f"sqlite:///{Path(text)}"
    scheme, rest = text.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("postgresql+psycopg", "sqlite"):
        return text
    raise ProjectError(f"{shown_url(text)}: an event store is a SQLite file or a postgresql:// URL")


def shown_url(url: str) -> str:
    """``url`` with its password masked, for messages and logs.

    >>> shown_url("postgresql://u:secret@db/x")
    'postgresql://u:***@db/x'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _engine(url: str, timeout_s: float) -> sa.Engine:
    """One engine per store. SQLite: one shared connection (the store serialises its use with a
    lock), WAL, autocommit reads, ``BEGIN IMMEDIATE`` writes. Postgres: a small pool whose
    connections are checked before use (a restarted server is reconnected to)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            poolclass=StaticPool,
            connect_args={
                "timeout": timeout_s,
                "isolation_level": None,
                "check_same_thread": False,
            },
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            connection.execute(f"PRAGMA busy_timeout={int(min(timeout_s, 1.0) * 1000)}")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")

        return engine
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ProjectError(
            f"{shown_url(url)}: a Postgres event store needs psycopg: "
            "pip install 'mlmedic[postgres]'"
        ) from None
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        connect_args={"connect_timeout": max(1, math.ceil(timeout_s))},
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
    """Append-only typed events in SQLite (WAL) or PostgreSQL, through SQLAlchemy Core; safe for
    several processes (and, on Postgres, several hosts) writing at once."""

    def __init__(
        self,
        target: str | Path,
        *,
        clock: Clock | None = None,
        timeout_s: float = 30.0,
        on_wait: Callable[[str], None] | None = None,
    ):
        self._locate(target)
        self.clock: Clock = clock or SystemClock()
        self.timeout_s = timeout_s
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self._pinned = threading.local()  # a connection ``reading`` holds for this thread
        self._conn: sa.Engine | None = None
        self._conn = self._open()

    def _locate(self, target: str | Path) -> None:
        self.url = events_url(target)
        self.sqlite = self.url.startswith("sqlite")
        # the SQLite file (None on Postgres), and how the store is named in messages
        self.path: Path | None = Path(self.url[len("sqlite:///") :]) if self.sqlite else None
        self.where = str(self.path) if self.path is not None else shown_url(str(target))

    def _open(self) -> sa.Engine:
        """An engine for the store; the file (SQLite) and the schema are created when missing."""
        engine: sa.Engine | None = None
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            engine = _engine(self.url, self.timeout_s)
            with engine.connect() as conn:
                if self.sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                _metadata.create_all(conn)
                self._check_version(conn)
                conn.commit()
        except EventStoreError:
            if engine is not None:
                engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            if engine is not None:
                engine.dispose()
            raise EventStoreError(
                f"{self.where}: cannot open the event store ({_reason(exc)})"
            ) from exc
        return engine

    def _check_version(self, conn: sa.Connection) -> None:
        found = conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar()
        if found is None:
            conn.execute(
                meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
            )
        elif int(found) > SCHEMA_VERSION:
            raise EventStoreError(
                f"{self.where}: the event store has schema version {found}, written by a newer "
                f"mlmedic (this one reads up to {SCHEMA_VERSION}); upgrade mlmedic"
            )

    @property
    def conn(self) -> sa.Engine:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.dispose()
                self._conn = None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def schema_version(self) -> int:
        """The schema version the store carries."""
        rows = self.select("SELECT value FROM mlmedic_meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

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
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise EventStoreError(
                f"{self.where}: cannot write an event to the event store ({_reason(exc)})"
            ) from exc
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
        payload = json.dumps(finite(dict(details or {})), default=str, allow_nan=False)
        row = (kind, action, outcome, started, ended, max(0.0, ended - started), version, message)
        return row, payload

    def _insert(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert rows (the columns of ``_COLUMNS``) in one transaction; their ids. While another
        process holds SQLite's write lock, wait up to ``timeout_s``, saying so once
        (``on_wait``)."""
        deadline = time.monotonic() + self.timeout_s
        told = False
        while True:
            try:
                return self._insert_once(rows)
            except SQLAlchemyError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
                if not told and self.on_wait is not None:
                    told = True
                    self.on_wait(
                        f"waiting for the event store {self.where}: another process holds its "
                        f"write lock (giving up after {self.timeout_s:.0f}s)"
                    )

    def _insert_once(self, rows: list[tuple[Any, ...]]) -> list[int]:
        if not rows:
            return []
        values = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        with self._lock, self.conn.connect() as conn:
            if self.sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            if conn.dialect.insert_returning:  # Postgres, SQLite >= 3.35: one statement
                statement = events_table.insert().returning(
                    events_table.c.id, sort_by_parameter_order=True
                )
                found: list[Any] = list(conn.execute(statement, values).scalars())
            else:  # an older SQLite: a row at a time, in the same transaction
                found = []
                for row in values:
                    key = conn.execute(events_table.insert(), row).inserted_primary_key
                    assert key is not None
                    found.append(key[0])
            ids = [int(i) for i in found]
            conn.commit()
        return ids

    def claim(self, name: str, *, seconds: float, holder: str | None = None) -> bool:
        """Claim ``name`` for ``seconds``: True for exactly one caller among every process
        sharing this store (every host, on Postgres) until the claim expires. One conditional
        upsert, atomic in the database: never a read-then-write race."""
        now = self.clock.now()
        who = holder or f"{socket.gethostname()}:{os.getpid()}"
        statement = sa.text(
            "INSERT INTO mlmedic_claims (name, holder, claimed_at, expires_at) "
            "VALUES (:name, :holder, :now, :expires) ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, claimed_at = excluded.claimed_at, "
            "expires_at = excluded.expires_at WHERE mlmedic_claims.expires_at <= :now"
        )
        params = {"name": name, "holder": who, "now": now, "expires": now + seconds}
        try:
            with self._lock, self.conn.connect() as conn:
                if self.sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                won = conn.execute(statement, params).rowcount == 1
                conn.commit()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise EventStoreError(f"{self.where}: cannot claim {name!r} ({_reason(exc)})") from exc
        return won

    @contextmanager
    def hold(
        self,
        name: str,
        what: str,
        *,
        wait_seconds: float = 600.0,
        say: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """Hold ``name`` for the block, across every host sharing a Postgres store (a session
        advisory lock: released by the server if this process dies). A second holder waits,
        saying so once, up to ``wait_seconds``, then gets ``ProjectBusyError``. On SQLite (one
        host) the project's file locks already serialise, and this holds nothing."""
        if self.sqlite:
            yield
            return
        key = sa.text("SELECT pg_try_advisory_lock(hashtextextended(:name, 0))")
        try:
            conn = self.conn.connect()
        except SQLAlchemyError as exc:
            raise EventStoreError(f"{self.where}: cannot lock {name!r} ({_reason(exc)})") from exc
        try:
            deadline = time.monotonic() + wait_seconds
            told = False
            while not conn.execute(key, {"name": name}).scalar():
                conn.rollback()
                if time.monotonic() >= deadline:
                    raise ProjectBusyError(
                        f"another host holds {name!r} in {self.where}; {what} did not start. "
                        "Try again when it has finished."
                    )
                if not told and say is not None:
                    told = True
                    say(f"waiting for another host's {name!r} to finish before: {what}")
                time.sleep(0.2)
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(SQLAlchemyError):
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(hashtextextended(:name, 0))"),
                        {"name": name},
                    )
                    conn.commit()
        finally:
            conn.close()

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
        table = events_table
        statement = sa.select(table)
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            statement = statement.where(table.c.kind.in_([EventKind(k).value for k in kinds]))
        if since is not None:
            statement = statement.where(table.c.started_at >= since)
        if until is not None:
            statement = statement.where(table.c.started_at < until)
        if outcome is not None:
            statement = statement.where(table.c.outcome == Outcome(outcome).value)
        started = table.c.started_at.desc() if newest_first else table.c.started_at.asc()
        statement = statement.order_by(started, table.c.id)
        if limit is not None:
            statement = statement.limit(int(limit))
        return [_event(tuple(row)) for row in self._read(statement, {})]

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Run this thread's reads in the block on one connection (one checkout, one liveness
        check, one snapshot-free transaction) instead of one each: for the dashboard's dozen
        queries on a server. SQLite shares its one connection already: nothing to pin."""
        if self.sqlite or getattr(self._pinned, "conn", None) is not None:
            yield
            return
        try:
            conn = self.conn.connect()
        except SQLAlchemyError as exc:
            raise EventStoreError(
                f"{self.where}: cannot read the event store ({_reason(exc)})"
            ) from exc
        self._pinned.conn = conn
        try:
            yield
        finally:
            self._pinned.conn = None
            with contextlib.suppress(SQLAlchemyError):
                conn.close()

    def _read(self, statement: Any, params: Mapping[str, Any]) -> list[Any]:
        try:
            pinned = getattr(self._pinned, "conn", None)
            if pinned is not None:
                return list(pinned.execute(statement, dict(params)).fetchall())
            with self._lock, self.conn.connect() as conn:
                return list(conn.execute(statement, dict(params)).fetchall())
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise EventStoreError(
                f"{self.where}: cannot read the event store ({_reason(exc)})"
            ) from exc

    def last(self, kind: str, *, outcome: str | None = None) -> Event | None:
        """The most recent event of ``kind`` (optionally with that outcome), or None."""
        events = self.query(kind=kind, outcome=outcome, limit=1, newest_first=True)
        return events[0] if events else None

    def counts(self) -> dict[tuple[str, str], int]:
        """Events by (kind, outcome): one aggregate query over the (kind, outcome) index."""
        rows = self.select("SELECT kind, outcome, COUNT(*) FROM events GROUP BY kind, outcome")
        return {(kind, outcome): int(n) for kind, outcome, n in rows}

    def select(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only ``SELECT`` over ``events`` with ``?`` placeholders (aggregates
        for the dashboard: ``COUNT``/``AVG`` by kind and outcome). ``json_extract(details,
        '$.key')`` reads one detail field on either database: its value in SQLite, its text on
        Postgres (callers convert numbers and flags)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise ValueError("select() runs SELECT statements only")
        parts = sql.split("?")
        if len(parts) - 1 != len(params):
            raise ValueError(f"{len(parts) - 1} placeholder(s) for {len(params)} parameter(s)")
        if self.sqlite:  # the same SQL, straight to the driver: plain tuples, no Row objects
            try:
                with self._lock:
                    raw = self.conn.raw_connection()
                    try:
                        driver: Any = raw.driver_connection
                        return list(driver.execute(sql, params).fetchall())
                    finally:
                        raw.close()
            except (SQLAlchemyError, sqlite3.Error) as exc:
                raise EventStoreError(
                    f"{self.where}: cannot read the event store ({_reason(exc)})"
                ) from exc
        named = parts[0] + "".join(f":p{i}{part}" for i, part in enumerate(parts[1:]))
        if not self.sqlite:
            named = _DETAIL.sub(r"(CAST(details AS jsonb) ->> '\1')", named)
        rows = self._read(sa.text(named), {f"p{i}": value for i, value in enumerate(params)})
        return [tuple(row) for row in rows]

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self.select("SELECT COUNT(*) FROM events")[0][0])
        rows = self.select("SELECT COUNT(*) FROM events WHERE kind = ?", (EventKind(kind).value,))
        return int(rows[0][0])

    def prune(self, before: float) -> int:
        """Delete events that started before ``before`` (``logging.retention_days``); how many.
        Long-running writers (the monitor, the supervisor) call it; reading never prunes."""
        statement = events_table.delete().where(events_table.c.started_at < before)
        try:
            with self._lock, self.conn.connect() as conn:
                removed = conn.execute(statement).rowcount
                conn.commit()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise EventStoreError(
                f"{self.where}: cannot prune the event store ({_reason(exc)})"
            ) from exc
        return int(removed or 0)

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


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: a metric that is undefined (ROC AUC
    on one class) is recorded as missing, never as invalid JSON or a failed write.

    >>> finite({"auc": float("nan"), "rows": [1.0, float("inf")]})
    {'auc': None, 'rows': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return finite(value.item())  # numpy scalars
        except (TypeError, ValueError):
            return value
    return value


def _orig(exc: BaseException) -> BaseException:
    """The driver's own error under an ``EventStoreError`` or a SQLAlchemy wrapper."""
    if isinstance(exc, EventStoreError) and exc.__cause__ is not None:
        exc = exc.__cause__
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def _reason(exc: BaseException) -> str:
    inner = _orig(exc)
    return str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__


def _busy(exc: BaseException) -> bool:
    """SQLite's write lock is held by another process (Postgres waits on its own)."""
    return getattr(_orig(exc), "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
