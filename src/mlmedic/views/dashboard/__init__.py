"""The self-healing dashboard: the six figures of the original design, and what stands beside them.

Every figure comes from aggregate queries of the event store (``COUNT``/``AVG`` grouped by kind
and outcome over its indexes, ``json_extract`` for the few detail fields needed), never by
loading every event; the timelines read only the events of their kinds inside the window.

The six figures, each with its window:

- **auto-fix success rate** (30 days): data-fix runs whose re-check passed / all data-fix runs;
- **rollbacks** (7 days): champion moves backwards, automatic (the monitor, the supervisor, the
  gate keeping the champion) and manual apart;
- **auto-retrains** (30 days): deployed / refused by the gate;
- **service recoveries** (30 days): incidents the supervisor recovered (and those it did not);
- **MTTR**: mean, median and p95 time from detection to ready over those recoveries;
- **overall health**: the mean of the parts that apply — serving ready; the champion's latest
  accuracy (measured, or estimated) against the gate's floor; no drift in the last pass; the
  last monitoring pass no older than its interval; no failed recovery in 30 days; the prediction
  log written in the last hour while serving. Each part is shown with its score and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlmedic.store.events import EventLog
from mlmedic.views.dashboard import figures as fig
from mlmedic.views.dashboard.board import (
    DAY,
    WINDOWS,
    Dashboard,
    Figure,
    HealthPart,
    Point,
    query,
    when,
)
from mlmedic.views.dashboard.figures import serving_state
from mlmedic.views.dashboard.timelines import timelines as _timelines

__all__ = [
    "DAY",
    "WINDOWS",
    "Dashboard",
    "Figure",
    "HealthPart",
    "Point",
    "build",
    "serving_state",
    "when",
]


def build(
    store: EventLog,
    *,
    now: float,
    project: str = "",
    state_dir: Path | None = None,
    settings: Any = None,
    window_days: float | None = None,
    since: float | None = None,
    serving: dict[str, Any] | None = None,
    timelines: bool = True,
) -> Dashboard:
    """The dashboard of ``store`` at ``now``. ``window_days`` replaces every figure's window;
    ``since`` starts the timelines (default: the longest window); ``serving``: the state of a
    running server (``ready``, ``fallback``), when known."""
    with store.reading():  # one connection for every query (on a database server)
        return _build(
            store,
            now=now,
            project=project,
            state_dir=state_dir,
            settings=settings,
            window_days=window_days,
            since=since,
            serving=serving,
            timelines=timelines,
        )


def _build(
    store: EventLog,
    *,
    now: float,
    project: str,
    state_dir: Path | None,
    settings: Any,
    window_days: float | None,
    since: float | None,
    serving: dict[str, Any] | None,
    timelines: bool,
) -> Dashboard:
    windows = {k: (window_days or v) * DAY for k, v in WINDOWS.items()}
    start = since if since is not None else now - max(windows.values())
    figures = [
        fig.auto_fix(store, now - windows["auto_fix"], window_days or WINDOWS["auto_fix"]),
        fig.rollbacks(store, now - windows["rollbacks"], window_days or WINDOWS["rollbacks"]),
        fig.retrains(store, now - windows["retrains"], window_days or WINDOWS["retrains"]),
    ]
    recoveries, mttr, failed, durations = fig.recoveries(
        store, now - windows["recoveries"], window_days or WINDOWS["recoveries"]
    )
    figures += [recoveries, mttr]
    total = query(store, "SELECT COUNT(*) FROM events")[0][0]
    last_pass = fig.last_pass(store)
    champion = fig.champion(store, state_dir)
    floor, interval_s, threshold, cooldown_h = fig.policy_numbers(settings, champion)
    parts = fig.health_parts(
        store,
        now=now,
        serving=serving,
        last_pass=last_pass,
        floor=floor,
        interval_s=interval_s,
        failed_recoveries=failed,
        log=fig.log_location(settings, state_dir),
        ceiling=fig.error_ceiling(settings, champion),
    )
    applicable = [p.score for p in parts if p.score is not None]
    health = sum(applicable) / len(applicable) if applicable else None
    figures.append(
        Figure(
            "health",
            "overall health",
            health,
            "no data yet" if health is None else f"{health * 100:.0f} %",
            " · ".join(
                f"{p.name} {'n/a' if p.score is None else f'{p.score * 100:.0f}%'}" for p in parts
            ),
            "the mean of the parts that apply: serving ready; the champion's latest accuracy "
            "(measured, or estimated) against the gate's floor; no drift in the last pass; the "
            "last monitoring pass within its interval; no failed recovery in 30 days; the "
            "prediction log written in the last hour while serving",
            "now",
        )
    )
    last_retrain = query(store, "SELECT MAX(started_at) FROM events WHERE kind = 'retrain'")[0][0]
    cooldown_until = None
    if last_retrain is not None and last_retrain + cooldown_h * 3600 > now:
        cooldown_until = float(last_retrain) + cooldown_h * 3600
    alerts = [
        {"at": at, "action": action, "outcome": outcome, "message": message}
        for at, action, outcome, message in query(
            store,
            "SELECT started_at, action, outcome, message FROM events WHERE kind = 'alert' "
            "AND started_at >= ? ORDER BY started_at DESC, id DESC LIMIT 5",
            (now - DAY,),
        )
    ]
    board = Dashboard(
        project=project,
        generated_at=now,
        since=start,
        figures=figures,
        health_parts=parts,
        champion=champion,
        last_pass=last_pass,
        cooldown_until=cooldown_until,
        alerts=alerts,
        drift_threshold=threshold,
        empty=total == 0,
        recovery_seconds=durations,
        releases=fig.releases(store),
    )
    if timelines:
        _timelines(store, board, start, now)
        if since is None:  # the axes start where the data does, not at the window's edge
            times = [p.at for p in (*board.drift, *board.accuracy, *board.error, *board.actions)]
            if times:
                first = min(times)
                board.since = max(start, first - 0.05 * max(now - first, 3600.0))
    return board
