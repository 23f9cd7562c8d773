"""What an event is: its kind and outcome (enums: a typo is an error, not a new kind), the
record itself, the span that times an action, and which kinds the seed's JSON logs hold."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlmedic.core.clock import Clock, to_iso


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
    RELEASE = "release"  # a shadow or canary release: started, judged, promoted, retired (#24)


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


def from_row(row: tuple[Any, ...]) -> Event:
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


@contextmanager
def timed(
    record: Callable[..., Event],
    clock: Clock,
    kind: str,
    action: str,
    model_version: str | int | None = None,
) -> Iterator[EventSpan]:
    """Time an action and ``record`` it when the block ends; an exception records a failure
    (``EventStore.span``, and the resilient store's, through its own ``record``)."""
    version = None if model_version is None else str(model_version)
    span = EventSpan(kind, action, version)
    started = clock.now()
    try:
        yield span
    except BaseException as exc:
        span.outcome = Outcome.FAILURE
        span.message = span.message or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        span.event = record(
            span.kind,
            span.action,
            span.outcome,
            message=span.message,
            details=span.details,
            model_version=span.model_version,
            started_at=started,
        )


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
