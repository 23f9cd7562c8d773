"""A project directory: its two config files and its state folder ``.mlmedic/``.

Deleting ``.mlmedic/`` resets everything mlmedic remembers; two project directories never share
state.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

from mlmedic.core.clock import Clock, SimulatedClock, SystemClock
from mlmedic.core.config import Settings, load_settings
from mlmedic.core.errors import MedicError, ProjectError
from mlmedic.model.registry import Registry, default_model_name
from mlmedic.store.events import EventLog, EventStore

STATE_DIR = ".mlmedic"


class Project:
    """Paths and shared services of one project directory (config is read once, lazily)."""

    def __init__(
        self,
        root: str | Path = ".",
        *,
        clock: Clock | None = None,
        service: bool = False,
        on_wait: Callable[[str], None] | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        """``service``: this process serves or supervises, so its event writes must never fail
        (they are buffered on disk while the store is unavailable, see ``eventbuffer``);
        ``tracking_uri``: the registry to use instead of ``MLFLOW_TRACKING_URI`` or the
        project's own SQLite store (a replay's throwaway registry)."""
        self.tracking_uri = tracking_uri
        self.root = Path(root).resolve()
        self.service = service
        self.on_wait = on_wait  # told when the event store makes a command wait
        if self.root.exists() and not self.root.is_dir():
            raise ProjectError(f"{self.root}: the project directory is a file, not a directory")
        self.clock: Clock = clock or SystemClock()

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def events_path(self) -> Path:
        return self.state_dir / "events.db"

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.root)

    @property
    def events_target(self) -> str | Path:
        """The event store: ``MLMEDIC_EVENTS_URL``, else ``events.url``, else the project's
        SQLite file."""
        return (
            os.environ.get("MLMEDIC_EVENTS_URL")
            or self.settings.self_healing.events.url
            or self.events_path
        )

    def log_location(self, name: str) -> str | Path:
        """Where the prediction log (``predictions``) or the feedback (``feedback``) lives:
        under ``serving.prediction_log_url`` when set, else in ``.mlmedic/``."""
        from mlmedic.store.logstore import log_location

        return log_location(
            self.settings.self_healing.serving.prediction_log_url, self.state_dir, name
        )

    @property
    def has_events(self) -> bool:
        """Is there an event store to read (a shared one always is; a local one once created)?"""
        return not isinstance(self.events_target, Path) or self.events_path.exists()

    @cached_property
    def events(self) -> EventLog:
        target = self.events_target
        if self.service:
            from mlmedic.store.eventbuffer import ResilientEventStore

            buffer = None if isinstance(target, Path) else self.state_dir / "events.buffer.jsonl"
            return ResilientEventStore(target, clock=self.clock, buffer_path=buffer)
        return EventStore(target, clock=self.clock, on_wait=self.on_wait)

    @cached_property
    def registry(self) -> Registry:
        registry = self._open_registry()
        if not self.service:  # serving never waits on MLflow for this: the next command does it
            self._restore_history(registry)
        return registry

    def _restore_history(self, registry: Registry) -> None:
        """A recreated event store gets its history back from MLflow (``registry.restore``);
        a registry or store that cannot say costs nothing but a warning, and is tried again by
        the next command."""
        from mlmedic.model.registry.restore import restore_history

        try:
            restore_history(self.events, registry, say=self.on_wait)
        except MedicError as exc:
            logging.getLogger("mlmedic.store.events").warning("history not restored: %s", exc)

    def _open_registry(self) -> Registry:
        training = self.settings.self_healing.model_training
        return Registry(
            self.state_dir,
            self.events,
            model_name=training.model_name or default_model_name(self.root),
            tracking_uri=self.tracking_uri,
            max_backups=training.max_backups,
            backup_retention_days=training.backup_retention_days,
            allow_pickle=training.allow_pickle_models_executing_code,
        )

    @contextlib.contextmanager
    def data_time(self, moment: float) -> Iterator[None]:
        """Run the block at ``moment`` of data time: the project's clock and its event store's
        read ``moment`` (and do not move), so everything the block records — events, alias
        moves, backups, cooldowns — is dated in the data's time (a backfill, a replay)."""
        clock = SimulatedClock(moment)
        events = self.events
        saved, saved_events = self.clock, events.clock
        self.clock = events.clock = clock
        try:
            yield
        finally:
            self.clock, events.clock = saved, saved_events

    def close(self) -> None:
        if "events" in self.__dict__:
            self.events.close()
