"""The event store itself: open (creating or checking the schema), record, query, select and
prune, one short transaction each, over SQLAlchemy Core on SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from mlmedic.core.clock import Clock, SystemClock
from mlmedic.core.errors import EventStoreError
from mlmedic.store.events import claims, export
from mlmedic.store.events.kinds import Event, EventKind, EventSpan, Outcome, finite, from_row, timed
from mlmedic.store.events.sql import (
    COLUMNS,
    DETAIL,
    SCHEMA_LOCK,
    SCHEMA_VERSION,
    Row,
    busy,
    events_table,
    events_url,
    meta_table,
    metadata,
    open_engine,
    reason,
    shown_url,
)


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
        open_now: bool = True,
    ):
        """``open_now=False`` opens the store on first use instead (for a store that may be
        away when it is made, as ``ResilientEventStore``'s)."""
        self._locate(target)
        self.clock: Clock = clock or SystemClock()
        self.timeout_s = timeout_s
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self._pinned = threading.local()  # a connection ``reading`` holds for this thread
        self._conn: sa.Engine | None = None
        if open_now:
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
            engine = open_engine(self.url, self.timeout_s)
            with engine.connect() as conn:
                if self.sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
                metadata.create_all(conn)
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
                f"{self.where}: cannot open the event store ({reason(exc)})"
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

    @property
    def opened(self) -> bool:
        """Whether the store is open now (one made with ``open_now=False`` opens on first use)."""
        return self._conn is not None

    def open(self) -> None:
        """Open the store now if it is not (``EventStoreError`` when it cannot be)."""
        _ = self.conn

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
        row, payload = self.make_row(
            kind, action, outcome, message, details, model_version, started_at, ended_at
        )
        return Event(self._store((*row, payload)), *row, details=json.loads(payload))

    def _store(self, row: tuple[Any, ...]) -> int:
        """Write one row; its id (``EventStoreError`` if the store cannot take it)."""
        event_id: int
        try:
            [event_id] = self.insert([row])
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise EventStoreError(
                f"{self.where}: cannot write an event to the event store ({reason(exc)})"
            ) from exc
        return event_id

    def make_row(
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

    def insert(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert rows (the columns of ``COLUMNS``) in one transaction; their ids. While another
        process holds SQLite's write lock, wait up to ``timeout_s``, saying so once
        (``on_wait``)."""
        deadline = time.monotonic() + self.timeout_s
        told = False
        while True:
            try:
                return self._insert_once(rows)
            except SQLAlchemyError as exc:
                if not busy(exc) or time.monotonic() >= deadline:
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
        values = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
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

    def span(
        self, kind: str, action: str, *, model_version: str | int | None = None
    ) -> contextlib.AbstractContextManager[EventSpan]:
        """Time an action and record it when the block ends; an exception records a failure."""
        return timed(self.record, self.clock, kind, action, model_version)

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
        return [from_row(tuple(row)) for row in self._read(statement, {})]

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
                f"{self.where}: cannot read the event store ({reason(exc)})"
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
                f"{self.where}: cannot read the event store ({reason(exc)})"
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
                    f"{self.where}: cannot read the event store ({reason(exc)})"
                ) from exc
        named = parts[0] + "".join(f":p{i}{part}" for i, part in enumerate(parts[1:]))
        if not self.sqlite:
            named = DETAIL.sub(r"(CAST(details AS jsonb) ->> '\1')", named)
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
                f"{self.where}: cannot prune the event store ({reason(exc)})"
            ) from exc
        return int(removed or 0)

    def claim(self, name: str, *, seconds: float, holder: str | None = None) -> bool:
        """Claim ``name`` for ``seconds``: True for exactly one caller among every process
        sharing this store until the claim expires (``events.claims``)."""
        return claims.claim(self, name, seconds=seconds, holder=holder)

    def hold(
        self,
        name: str,
        what: str,
        *,
        wait_seconds: float = 600.0,
        say: Callable[[str], None] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """Hold ``name`` for a block across every host sharing a Postgres store
        (``events.claims``)."""
        return claims.hold(self, name, what, wait_seconds=wait_seconds, say=say)

    def export(
        self,
        directory: str | Path,
        *,
        kind: str | None = None,
        since: float | None = None,
        names: Mapping[str, str] | None = None,
    ) -> dict[str, int]:
        """Write the seed-style JSON logs into ``directory``; return counts (``events.export``)."""
        return export.export(self, directory, kind=kind, since=since, names=names)
