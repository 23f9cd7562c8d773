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

from mlmedic.store.events.kinds import EXPORT_FILES, Event, EventKind, EventSpan, Outcome, finite
from mlmedic.store.events.log import EventLog
from mlmedic.store.events.sql import SCHEMA_VERSION, events_url, original_error, shown_url
from mlmedic.store.events.store import EventStore

__all__ = [
    "EXPORT_FILES",
    "SCHEMA_VERSION",
    "Event",
    "EventKind",
    "EventLog",
    "EventSpan",
    "EventStore",
    "Outcome",
    "events_url",
    "finite",
    "original_error",
    "shown_url",
]
