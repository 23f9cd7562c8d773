"""Claims and locks across every process sharing an event store (every host, on Postgres): an
expiring claim taken by one conditional upsert (one monitoring pass per interval, one retrain
attempt per interval), and a lock held for a block (a session advisory lock on Postgres)."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from mlmedic.core.errors import EventStoreError, ProjectBusyError
from mlmedic.store.events.sql import reason

if TYPE_CHECKING:
    from mlmedic.store.events.store import EventStore


def claim(store: EventStore, name: str, *, seconds: float, holder: str | None = None) -> bool:
    """Claim ``name`` for ``seconds``: True for exactly one caller among every process
    sharing this store (every host, on Postgres) until the claim expires. One conditional
    upsert, atomic in the database: never a read-then-write race."""
    now = store.clock.now()
    who = holder or f"{socket.gethostname()}:{os.getpid()}"
    statement = sa.text(
        "INSERT INTO mlmedic_claims (name, holder, claimed_at, expires_at) "
        "VALUES (:name, :holder, :now, :expires) ON CONFLICT (name) DO UPDATE SET "
        "holder = excluded.holder, claimed_at = excluded.claimed_at, "
        "expires_at = excluded.expires_at WHERE mlmedic_claims.expires_at <= :now"
    )
    params = {"name": name, "holder": who, "now": now, "expires": now + seconds}
    try:
        with store._lock, store.conn.connect() as conn:
            if store.sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            won = conn.execute(statement, params).rowcount == 1
            conn.commit()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise EventStoreError(f"{store.where}: cannot claim {name!r} ({reason(exc)})") from exc
    return won


@contextmanager
def hold(
    store: EventStore,
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
    if store.sqlite:
        yield
        return
    key = sa.text("SELECT pg_try_advisory_lock(hashtextextended(:name, 0))")
    try:
        conn = store.conn.connect()
    except SQLAlchemyError as exc:
        raise EventStoreError(f"{store.where}: cannot lock {name!r} ({reason(exc)})") from exc
    try:
        deadline = time.monotonic() + wait_seconds
        told = False
        while not conn.execute(key, {"name": name}).scalar():
            conn.rollback()
            if time.monotonic() >= deadline:
                raise ProjectBusyError(
                    f"another host holds {name!r} in {store.where}; {what} did not start. "
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
