"""The SQL of the event store, for each database: the tables and indexes (one schema on SQLite
and PostgreSQL), the engine each is opened with (SQLite: one shared connection, WAL, a busy
timeout; Postgres: a pool), store URLs as given and as shown, and how a database error reads."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from mlmedic.core.errors import EventStoreError, ProjectError

SCHEMA_VERSION = 1

SCHEMA_LOCK = 0x6D6C6D65  # the advisory lock that serialises creating the schema on Postgres

metadata = sa.MetaData()

# ``id`` is BIGSERIAL on Postgres and INTEGER PRIMARY KEY AUTOINCREMENT on SQLite (the table an
# earlier mlmedic created in SQLite is this table; its indexes keep their names).
events_table = sa.Table(
    "events",
    metadata,
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
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# atomic claims shared by every process (and every host, on Postgres): see ``EventStore.claim``
claims_table = sa.Table(
    "mlmedic_claims",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("claimed_at", sa.Float(precision=53), nullable=False),
    sa.Column("expires_at", sa.Float(precision=53), nullable=False),
)

COLUMNS = (
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

DETAIL = re.compile(r"json_extract\(details, '\$\.(\w+)'\)")


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


def open_engine(url: str, timeout_s: float) -> sa.Engine:
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


def original_error(exc: BaseException) -> BaseException:
    """The driver's own error under an ``EventStoreError`` or a SQLAlchemy wrapper."""
    if isinstance(exc, EventStoreError) and exc.__cause__ is not None:
        exc = exc.__cause__
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def reason(exc: BaseException) -> str:
    inner = original_error(exc)
    return str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__


def busy(exc: BaseException) -> bool:
    """SQLite's write lock is held by another process (Postgres waits on its own)."""
    return getattr(original_error(exc), "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
