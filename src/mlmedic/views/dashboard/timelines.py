"""The dashboard's timelines: accuracy, drift and the loop's actions over the window, read from
only the events of their kinds inside it."""

from __future__ import annotations

import json

from mlmedic.store.events import EventLog
from mlmedic.views.dashboard.board import Dashboard, Point, flag, num, query


def timelines(store: EventLog, board: Dashboard, start: float, now: float) -> None:
    for at, score, threshold, version in query(
        store,
        "SELECT started_at, json_extract(details, '$.score'), json_extract(details, '$.threshold'),"
        " model_version FROM events WHERE kind = 'drift_check' AND started_at BETWEEN ? AND ? "
        "ORDER BY started_at, id",
        (start, now),
    ):
        board.drift.append(Point(at, num(score), version=version))
        if threshold is not None:
            board.drift_threshold = float(threshold)
    for at, accuracy, estimated, version, mae in query(
        store,
        "SELECT started_at, json_extract(details, '$.accuracy'), "
        "json_extract(details, '$.estimated'), model_version, json_extract(details, '$.mae') "
        "FROM events "
        "WHERE kind = 'performance_check' AND started_at BETWEEN ? AND ? ORDER BY started_at, id",
        (start, now),
    ):
        series = board.accuracy if mae is None else board.error  # a regression's: its MAE
        value = num(accuracy if mae is None else mae)
        series.append(Point(at, value, version=version, estimated=flag(estimated)))
    actions = query(
        store,
        "SELECT started_at, kind, action, outcome, model_version FROM events "
        "WHERE kind IN ('data_fix', 'retrain', 'rollback', 'recovery', 'deploy') "
        "AND started_at BETWEEN ? AND ?",
        (start, now),
    )
    # ordered here, ties by their fields: the same order on every database, and cheaper than
    # the database's sort of the whole window
    actions.sort(key=lambda row: (row[0], row[1], row[2], row[3], row[4] or ""))
    for at, kind, action, outcome, version in actions:
        if kind == "recovery" and action != "service":
            continue
        if kind == "deploy" and action != "deploy":
            continue
        board.actions.append(
            Point(at, None, label=f"{action} ({outcome})", kind=kind, version=version)
        )
    for at, duration, outcome in query(
        store,
        "SELECT started_at, duration_s, outcome FROM events WHERE kind = 'recovery' "
        "AND action = 'service' AND started_at BETWEEN ? AND ? ORDER BY started_at, id",
        (start, now),
    ):
        board.incidents.append(Point(at, duration, label=outcome, kind="recovery"))
    recent = query(
        store,
        "SELECT started_at, json_extract(details, '$.features') FROM events "
        "WHERE kind = 'drift_check' AND started_at BETWEEN ? AND ? "
        "ORDER BY started_at DESC, id DESC LIMIT 12",
        (start, now),
    )
    for at, features in reversed(recent):
        board.heatmap.append(
            {
                "at": at,
                "features": [
                    {
                        "name": f.get("name"),
                        "drifted": f.get("drifted"),
                        "statistic": f.get("statistic"),
                    }
                    for f in (json.loads(features) if features else [])
                ],
            }
        )
