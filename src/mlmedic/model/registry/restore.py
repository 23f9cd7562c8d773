"""History back from MLflow when the event store was lost (#21).

An event store that was deleted is recreated empty, and an empty store would forget the cooldown
(the next drift retrains at once), the back-off, the probation of a retrained champion, the order
the champions served in (the fallback) and the versions people rolled back from. MLflow holds
what is needed to restore them, written as versions change:

- ``mlmedic.deployed_at`` and ``mlmedic.status_at`` (with ``mlmedic.status``): when a version
  last became champion and when its status was last set — the order the champions served in,
  and the rollbacks (a version tagged ``rolled-back``);
- ``mlmedic.retrain``: the monitor's retrain that made a candidate — when it ran, whether it
  deployed, and how many new labelled rows a refusal waits for (the cooldown and the back-off);
- the version's ``monitor vN`` run: every monitoring pass as metrics at step = its time (the last
  actions, and the labelled windows a probation needs).

The first command that opens the registry on a store that knows no version while MLflow holds
some writes these back as events marked ``restored``, and one ``component`` event saying that the
store was recreated and what was restored. One process does it (a claim in the new store).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlmedic.core.clock import to_iso
from mlmedic.model.registry.versions import (
    CHAMPION,
    DEPLOYED_AT_TAG,
    MONITORING_RUN_TAG,
    PREVIOUS,
    RETRAIN_TAG,
    STATUS_AT_TAG,
    VersionInfo,
)
from mlmedic.store.events import EventKind, EventLog, Outcome

if TYPE_CHECKING:
    from mlmedic.model.registry import Registry

CLAIM = "restore-history"
SERVED = ("champion", "retired", "rolled-back")
PASS_METRICS = ("rows", "drift_score", "accuracy", "estimated_accuracy", "measured_rows")

# what one restored event is: kind, action, outcome, time, version, message, details
Restoring = tuple[str, str, str, float, int | None, str, dict[str, Any]]


def needs_restoring(events: EventLog) -> bool:
    """Whether the store knows no version at all (new, or recreated)."""
    return events.count(EventKind.REGISTER) == 0 and events.count(EventKind.ALIAS) == 0


def restore_history(
    events: EventLog, registry: Registry, say: Callable[[str], None] | None = None
) -> dict[str, Any] | None:
    """Restore what MLflow holds into a store that knows no version; what was restored (None
    when nothing was: a new project, a store that has history, another process restoring)."""
    if not needs_restoring(events):
        return None
    versions = registry.versions()
    if not versions or not events.claim(CLAIM, seconds=3600.0):
        return None
    found = [
        *_deployments(versions),
        *_retrains(versions),
        *_passes(registry, versions),
    ]
    found.sort(key=lambda item: item[3])
    for kind, action, outcome, at, version, message, details in found:
        started = float(details.pop("started_at", at))
        events.record(
            kind,
            action,
            outcome,
            message=f"{message} (restored from MLflow)",
            details={**details, "restored": True},
            model_version=version,
            started_at=started,
            ended_at=at,
        )
    summary = _summary(found, registry.model_name)
    message = f"the event store {events.where} was recreated: restored from MLflow " + ", ".join(
        f"{n} {what}" for what, n in summary["counts"].items()
    )
    if summary["cooldown_from"] is not None:
        message += f"; the last deployment by a retrain at {to_iso(summary['cooldown_from'])}"
    events.record(
        EventKind.COMPONENT,
        "event-store history restored",
        Outcome.WARNING,
        message=message,
        details={"component": "event_store", "store": events.where, **summary},
    )
    if say is not None:
        say(message)
    return summary


def _number(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


def _deployments(versions: list[VersionInfo]) -> list[Restoring]:
    """The champions in the order they served (``champion`` moves), who was ``previous``, and
    the rollbacks."""
    served = sorted(
        (_number(v.tags, DEPLOYED_AT_TAG) or v.created_at, v.version)
        for v in versions
        if v.status in SERVED or DEPLOYED_AT_TAG in v.tags
    )
    found: list[Restoring] = []
    before: int | None = None
    for at, version in served:
        details = {"alias": CHAMPION, "from": before, "to": version, "reason": "restored"}
        message = f"champion: {_v(before)} -> v{version}"
        move = (EventKind.ALIAS, "champion set", Outcome.SUCCESS, at, version, message, details)
        found.append(move)
        before = version
    previous = next((v for v in versions if PREVIOUS in v.aliases), None)
    if previous is not None and served:
        details = {"alias": PREVIOUS, "from": None, "to": previous.version, "reason": "restored"}
        at = served[-1][0]
        message = f"previous: none -> v{previous.version}"
        found.append((EventKind.ALIAS, "previous set", Outcome.SUCCESS, at, None, message, details))
    for info in versions:
        if info.status != "rolled-back":
            continue
        at = _number(info.tags, STATUS_AT_TAG) or info.created_at
        # the version deployed by the rollback: the one that became champion closest to it
        others = [(abs(when - at), v) for when, v in served if v != info.version]
        to = min(others)[1] if others else None
        details = {"from_version": info.version, "to_version": to, "reason": info.reason}
        message = f"rolled back v{info.version} -> {_v(to)}: {info.reason or 'no reason'}"
        found.append((EventKind.ROLLBACK, "rollback", Outcome.SUCCESS, at, to, message, details))
    return found


def _retrains(versions: list[VersionInfo]) -> list[Restoring]:
    """The monitor's retrains: deployed (the cooldown) or refused (the back-off)."""
    found: list[Restoring] = []
    for info in versions:
        try:
            record = json.loads(info.tags[RETRAIN_TAG])
            started, ended = float(record["started_at"]), float(record["ended_at"])
        except (KeyError, ValueError, TypeError):
            continue
        deployed = bool(record.get("deployed"))
        details = {
            "candidate": info.version,
            "deployed": deployed,
            "rows_needed": int(record.get("rows_needed") or 0),
            "started_at": started,
        }
        outcome = Outcome.SUCCESS if deployed else Outcome.FAILURE
        verdict = "deployed" if deployed else "rejected by the gate"
        message = f"retrain: v{info.version} {verdict}"
        found.append((EventKind.RETRAIN, "retrain", outcome, ended, None, message, details))
    return found


def _passes(registry: Registry, versions: list[VersionInfo]) -> list[Restoring]:
    """Every monitoring pass each version's ``monitor vN`` run kept."""
    client = registry.client
    found: list[Restoring] = []
    for info in versions:
        run_id = info.tags.get(MONITORING_RUN_TAG)
        if not run_id:
            continue
        steps: dict[int, dict[str, float]] = {}
        for key in PASS_METRICS:
            history = registry.connection.call(
                "read the monitoring history", client.get_metric_history, run_id, key
            )
            for metric in history:
                steps.setdefault(int(metric.step), {})[key] = float(metric.value)
        for step, values in sorted(steps.items()):
            measured = int(values.get("measured_rows", 0))
            details = {
                "until": float(step),
                "rows": int(values.get("rows", 0)),
                "drift_score": values.get("drift_score"),
                "measured_rows": measured,
                "measured_accuracy": values.get("accuracy") if measured else None,
                "estimated_accuracy": values.get("estimated_accuracy"),
            }
            message = f"pass of v{info.version}: {details['rows']:,} rows"
            at = float(step)
            found.append((EventKind.MONITOR, "pass", "success", at, info.version, message, details))
    return found


def _summary(found: list[Restoring], model_name: str) -> dict[str, Any]:
    names = {
        EventKind.ALIAS: "alias moves",
        EventKind.ROLLBACK: "rollbacks",
        EventKind.RETRAIN: "retrains",
        EventKind.MONITOR: "monitoring passes",
    }
    counts = {label: sum(1 for item in found if item[0] == kind) for kind, label in names.items()}
    deployed = [item[3] for item in found if item[0] == EventKind.RETRAIN and item[2] == "success"]
    return {
        "model": model_name,
        "counts": counts,
        "cooldown_from": max(deployed) if deployed else None,
    }


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"
