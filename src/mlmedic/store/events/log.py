"""What every event store offers its readers and writers (``EventLog``): the plain
``EventStore``, and the ``ResilientEventStore`` that wraps one for the parts that must never
stop. Code that records or reads events takes an ``EventLog``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from mlmedic.core.clock import Clock
from mlmedic.store.events.kinds import Event, EventSpan, Outcome


class EventLog(Protocol):
    """The event store as its users see it (see ``EventStore`` for each method)."""

    clock: Clock  # set for a block of data time (``Project.data_time``)

    @property
    def where(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def sqlite(self) -> bool: ...

    @property
    def path(self) -> Path | None: ...

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
    ) -> Event: ...

    def span(
        self, kind: str, action: str, *, model_version: str | int | None = None
    ) -> AbstractContextManager[EventSpan]: ...

    def query(
        self,
        *,
        kind: str | tuple[str, ...] | None = None,
        since: float | None = None,
        until: float | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]: ...

    def last(self, kind: str, *, outcome: str | None = None) -> Event | None: ...

    def counts(self) -> dict[tuple[str, str], int]: ...

    def count(self, kind: str | None = None) -> int: ...

    def select(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    def reading(self) -> AbstractContextManager[None]: ...

    def schema_version(self) -> int: ...

    def prune(self, before: float) -> int: ...

    def claim(self, name: str, *, seconds: float, holder: str | None = None) -> bool: ...

    def hold(
        self,
        name: str,
        what: str,
        *,
        wait_seconds: float = 600.0,
        say: Callable[[str], None] | None = None,
    ) -> AbstractContextManager[None]: ...

    def export(
        self,
        directory: str | Path,
        *,
        kind: str | None = None,
        since: float | None = None,
        names: Mapping[str, str] | None = None,
    ) -> dict[str, int]: ...

    def close(self) -> None: ...
