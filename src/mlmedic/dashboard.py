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

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlmedic.clock import to_iso
from mlmedic.events import EventStore

DAY = 86_400.0
WINDOWS = {"auto_fix": 30.0, "rollbacks": 7.0, "retrains": 30.0, "recoveries": 30.0}


@dataclass
class Figure:
    """One tile: its value, how it is shown, what it means, over which window."""

    key: str
    title: str
    value: float | None
    shown: str
    detail: str
    definition: str
    window: str


@dataclass
class HealthPart:
    name: str
    score: float | None  # 0..1; None: does not apply here
    why: str


@dataclass
class Point:
    """One point of a timeline."""

    at: float
    value: float | None
    label: str = ""
    kind: str = ""
    version: str | None = None
    estimated: bool = False


@dataclass
class Dashboard:
    """Everything the three views (terminal, HTML, JSON) show."""

    project: str
    generated_at: float
    since: float
    figures: list[Figure]
    health_parts: list[HealthPart]
    champion: dict[str, Any] | None
    last_pass: dict[str, Any] | None
    cooldown_until: float | None
    alerts: list[dict[str, Any]]
    drift: list[Point] = field(default_factory=list)
    accuracy: list[Point] = field(default_factory=list)
    actions: list[Point] = field(default_factory=list)
    incidents: list[Point] = field(default_factory=list)
    heatmap: list[dict[str, Any]] = field(default_factory=list)
    drift_threshold: float = 0.5
    empty: bool = False
    recovery_seconds: list[float] = field(default_factory=list)  # of the recoveries' window

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(store: EventStore, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return store.select(sql, params)


def _num(value: Any) -> float | None:
    """A detail read with ``json_extract``: a number in SQLite, its text on Postgres."""
    return None if value is None else float(value)


def _flag(value: Any) -> bool:
    """A JSON boolean read with ``json_extract``: 1/0 in SQLite, 'true'/'false' on Postgres."""
    return value in (1, True, "true")


def _ratio(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,}"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def build(
    store: EventStore,
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
    store: EventStore,
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
        _auto_fix(store, now - windows["auto_fix"], window_days or WINDOWS["auto_fix"]),
        _rollbacks(store, now - windows["rollbacks"], window_days or WINDOWS["rollbacks"]),
        _retrains(store, now - windows["retrains"], window_days or WINDOWS["retrains"]),
    ]
    recoveries, mttr, failed, durations = _recoveries(
        store, now - windows["recoveries"], window_days or WINDOWS["recoveries"]
    )
    figures += [recoveries, mttr]
    total = _rows(store, "SELECT COUNT(*) FROM events")[0][0]
    last_pass = _last_pass(store)
    champion = _champion(store, state_dir)
    floor, interval_s, threshold, cooldown_h = _policy_numbers(settings, champion)
    parts = _health_parts(
        store,
        now=now,
        serving=serving,
        last_pass=last_pass,
        floor=floor,
        interval_s=interval_s,
        failed_recoveries=failed,
        log=_log_location(settings, state_dir),
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
    last_retrain = _rows(store, "SELECT MAX(started_at) FROM events WHERE kind = 'retrain'")[0][0]
    cooldown_until = None
    if last_retrain is not None and last_retrain + cooldown_h * 3600 > now:
        cooldown_until = float(last_retrain) + cooldown_h * 3600
    alerts = [
        {"at": at, "action": action, "outcome": outcome, "message": message}
        for at, action, outcome, message in _rows(
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
    )
    if timelines:
        _timelines(store, board, start, now)
        if since is None:  # the axes start where the data does, not at the window's edge
            times = [p.at for p in (*board.drift, *board.accuracy, *board.actions)]
            if times:
                first = min(times)
                board.since = max(start, first - 0.05 * max(now - first, 3600.0))
    return board


# ---------------------------------------------------------------- the six figures


def _outcomes(store: EventStore, kind: str, since: float, action: str | None = None) -> dict:
    """Events of ``kind`` (and ``action``) since ``since``, counted by outcome."""
    sql = "SELECT outcome, COUNT(*) FROM events WHERE kind = ? AND started_at >= ?"
    params: tuple[Any, ...] = (kind, since)
    if action is not None:
        sql += " AND action = ?"
        params += (action,)
    return {outcome: int(n) for outcome, n in _rows(store, sql + " GROUP BY outcome", params)}


def _auto_fix(store: EventStore, since: float, days: float) -> Figure:
    rows = _outcomes(store, "data_fix", since)
    total = sum(rows.values())
    passed = int(rows.get("success", 0))
    value = passed / total if total else None
    return Figure(
        "auto_fix",
        "auto-fix success rate",
        value,
        "no data yet" if value is None else f"{value * 100:.0f} %",
        "no data-fix runs" if not total else f"{_ratio(passed, total)} re-checks passed",
        "data-fix runs whose re-check passed / all data-fix runs",
        f"{days:g} days",
    )


def _rollbacks(store: EventStore, since: float, days: float) -> Figure:
    rows = _rows(
        store,
        "SELECT action, json_extract(details, '$.by'), json_extract(details, '$.reason'), "
        "outcome, COUNT(*) FROM events WHERE kind = 'rollback' AND started_at >= ? "
        "GROUP BY 1, 2, 3, 4",
        (since,),
    )
    automatic = manual = 0
    for action, by, reason, outcome, count in rows:
        if action == "auto-rollback":
            if outcome == "success":  # the gate kept the champion
                automatic += count
            continue
        person = by == "person" or (by is None and str(reason or "").startswith("manual"))
        if person:
            manual += count
        else:
            automatic += count
    total = automatic + manual
    return Figure(
        "rollbacks",
        "rollbacks",
        float(total),
        f"{total:,}",
        f"{automatic:,} automatic · {manual:,} manual",
        "champion moves backwards: automatic (monitor, supervisor, the gate keeping the "
        "champion) and manual (mlmedic rollback) apart",
        f"{days:g} days",
    )


def _retrains(store: EventStore, since: float, days: float) -> Figure:
    rows = _outcomes(store, "retrain", since)
    deployed, refused = int(rows.get("success", 0)), int(rows.get("failure", 0))
    total = sum(rows.values())
    return Figure(
        "retrains",
        "auto-retrains",
        float(total),
        f"{total:,}",
        f"{deployed:,} deployed · {refused:,} refused by the gate",
        "retrains the monitor started: deployed / refused by the gate",
        f"{days:g} days",
    )


def _recoveries(
    store: EventStore, since: float, days: float
) -> tuple[Figure, Figure, int, list[float]]:
    rows = _outcomes(store, "recovery", since, action="service")
    recovered = int(rows.get("success", 0))
    failed = sum(v for k, v in rows.items() if k != "success")
    durations = [
        float(d)
        for (d,) in _rows(
            store,
            "SELECT duration_s FROM events WHERE kind = 'recovery' AND action = 'service' "
            "AND outcome = 'success' AND started_at >= ? ORDER BY duration_s",
            (since,),
        )
    ]
    mean = sum(durations) / len(durations) if durations else None
    median, p95 = _percentile(durations, 0.5), _percentile(durations, 0.95)
    recoveries = Figure(
        "recoveries",
        "service recoveries",
        float(recovered),
        f"{recovered:,}",
        f"{failed:,} not recovered" if failed else "none failed",
        "outages the supervisor detected and recovered (worker exits, failed health checks)",
        f"{days:g} days",
    )
    mttr = Figure(
        "mttr",
        "mean time to recovery",
        mean,
        "no data yet" if mean is None else _seconds(mean),
        "no recoveries"
        if mean is None
        else f"median {_seconds(median)} · p95 {_seconds(p95)} · {len(durations):,} recoveries",
        "from detection to ready again, over the recoveries of the window",
        f"{days:g} days",
    )
    return recoveries, mttr, failed, durations


# ---------------------------------------------------------------- beside them


def _last_pass(store: EventStore) -> dict[str, Any] | None:
    rows = _rows(
        store,
        "SELECT started_at, json_extract(details, '$.rows'), json_extract(details, '$.action'), "
        "message, model_version FROM events WHERE kind = 'monitor' "
        "ORDER BY started_at DESC, id DESC LIMIT 1",
    )
    if not rows:
        return None
    at, rows_seen, action, message, version = rows[0]
    drift = _rows(
        store,
        "SELECT json_extract(details, '$.score'), json_extract(details, '$.drifted'), "
        "json_extract(details, '$.threshold') FROM events WHERE kind = 'drift_check' "
        "AND started_at <= ? ORDER BY started_at DESC, id DESC LIMIT 1",
        (at,),
    )
    performance = _rows(
        store,
        "SELECT json_extract(details, '$.accuracy'), json_extract(details, '$.estimated'), "
        "json_extract(details, '$.low'), json_extract(details, '$.high'), message "
        "FROM events WHERE kind = 'performance_check' AND started_at <= ? "
        "ORDER BY started_at DESC, id DESC LIMIT 1",
        (at,),
    )
    found: dict[str, Any] = {
        "at": at,
        "rows": None if rows_seen is None else int(float(rows_seen)),
        "action": action,
        "message": message,
        "model_version": version,
    }
    if drift:
        score, drifted, threshold = drift[0]
        found.update(
            drift_score=_num(score),
            drifted_features=json.loads(drifted) if drifted else [],
            drift_threshold=_num(threshold),
        )
    if performance:
        accuracy, was_estimated, low, high, summary = performance[0]
        found.update(
            accuracy=_num(accuracy),
            estimated=_flag(was_estimated),
            accuracy_low=_num(low),
            accuracy_high=_num(high),
            performance=summary,
        )
    return found


def _champion(store: EventStore, state_dir: Path | None) -> dict[str, Any] | None:
    """The champion from the local record (no MLflow): version, since when, its metrics."""
    if state_dir is None:
        return None
    from mlmedic.registry import read_pointer

    pointer = read_pointer(state_dir)
    if not pointer:
        return None
    version = int(pointer["version"])
    moved = _rows(
        store,
        "SELECT MAX(started_at) FROM events WHERE kind = 'alias' "
        "AND json_extract(details, '$.alias') = 'champion' "
        "AND CAST(json_extract(details, '$.to') AS TEXT) = ?",
        (str(version),),
    )[0][0]
    metrics: dict[str, Any] = {}
    manifest_path = state_dir / "serving-cache" / f"v{version}" / "manifest.json"
    with contextlib.suppress(OSError, ValueError):  # no local copy yet: no metrics shown
        metrics = dict(json.loads(manifest_path.read_text(encoding="utf-8")).get("metrics") or {})
    return {
        "version": version,
        "model_name": pointer.get("model_name"),
        "since": moved if moved is not None else pointer.get("updated_at"),
        "metrics": metrics,
        "synced": pointer.get("synced", True),
    }


def _policy_numbers(
    settings: Any, champion: dict[str, Any] | None
) -> tuple[float, float, float, float]:
    """(accuracy floor, monitoring interval s, drift threshold, cooldown hours)."""
    floor, interval, threshold, cooldown = 0.70, 6 * 3600.0, 0.5, 24.0
    if settings is not None:
        validation = settings.self_healing.model_validation
        floor = validation.min_accuracy_threshold
        validated = (champion or {}).get("metrics", {}).get("accuracy")
        if validated is not None:
            floor = max(floor, float(validated) - validation.performance_degradation_threshold)
        interval = settings.monitoring.monitoring_interval_hours * 3600.0
        threshold = settings.drift_threshold
        cooldown = settings.retraining_cooldown_hours
    return floor, interval, threshold, cooldown


def _health_parts(
    store: EventStore,
    *,
    now: float,
    serving: dict[str, Any] | None,
    last_pass: dict[str, Any] | None,
    floor: float,
    interval_s: float,
    failed_recoveries: int,
    log: str | Path | None,
) -> list[HealthPart]:
    parts = []
    if serving is None:
        parts.append(HealthPart("serving", None, "no running mlmedic serve found"))
    elif serving.get("ready"):
        fallback = serving.get("fallback")
        parts.append(
            HealthPart(
                "serving",
                0.5 if fallback else 1.0,
                "ready, on a fallback version" if fallback else "ready",
            )
        )
    else:
        parts.append(HealthPart("serving", 0.0, str(serving.get("why") or "not ready")))
    accuracy = (last_pass or {}).get("accuracy")
    if accuracy is None:
        parts.append(HealthPart("accuracy", None, "not measured or estimated yet"))
    else:
        estimated = (last_pass or {}).get("estimated")
        kind = "estimated" if estimated else "measured"
        score = 1.0 if accuracy >= floor else max(0.0, float(accuracy) / floor) * 0.5
        parts.append(
            HealthPart("accuracy", score, f"{kind} {accuracy:.3f} against a floor of {floor:.3f}")
        )
    if last_pass is None or last_pass.get("drift_score") is None:
        parts.append(HealthPart("drift", None, "no drift check yet"))
    else:
        drifted = last_pass.get("drifted_features") or []
        score = last_pass["drift_score"]
        threshold = last_pass.get("drift_threshold") or 0.5
        parts.append(
            HealthPart(
                "drift",
                0.5 if score > threshold else 1.0,
                f"score {score:.2f} {'>' if score > threshold else '<='} {threshold}"
                + (f" ({', '.join(drifted[:3])})" if drifted else ""),
            )
        )
    if last_pass is None:
        parts.append(HealthPart("monitoring", None, "no monitoring pass yet"))
    else:
        age = now - float(last_pass["at"])
        score = 1.0 if age <= interval_s * 1.1 else (0.5 if age <= 2 * interval_s else 0.0)
        parts.append(
            HealthPart(
                "monitoring",
                score,
                f"last pass {_seconds(age)} ago (every {_seconds(interval_s)})",
            )
        )
    supervised = serving is not None or bool(
        store.select(
            "SELECT 1 FROM events WHERE kind = 'recovery' AND started_at >= ? LIMIT 1",
            (now - 30 * DAY,),
        )
    )
    parts.append(
        HealthPart(
            "recoveries",
            (0.0 if failed_recoveries else 1.0) if supervised else None,
            f"{failed_recoveries} failed in 30 days"
            if failed_recoveries
            else ("none failed in 30 days" if supervised else "nothing served in 30 days"),
        )
    )
    if serving is None or log is None:
        parts.append(HealthPart("prediction log", None, "not serving"))
    else:
        from mlmedic.logstore import newest_write

        newest = newest_write(log)
        if newest is None:
            parts.append(HealthPart("prediction log", 0.0, "nothing logged yet"))
        else:
            age = time.time() - newest
            parts.append(
                HealthPart(
                    "prediction log",
                    1.0 if age <= 3600 else 0.0,
                    f"last written {_seconds(age)} ago",
                )
            )
    return parts


def _log_location(settings: Any, state_dir: Path | None) -> str | Path | None:
    """The prediction log: under ``serving.prediction_log_url`` if set, else ``.mlmedic/``."""
    from mlmedic.logstore import log_location

    url = settings.self_healing.serving.prediction_log_url if settings is not None else None
    if url is None and state_dir is None:
        return None
    return log_location(url, state_dir or Path("."), "predictions")


# ---------------------------------------------------------------- timelines


def _timelines(store: EventStore, board: Dashboard, start: float, now: float) -> None:
    for at, score, threshold, version in _rows(
        store,
        "SELECT started_at, json_extract(details, '$.score'), json_extract(details, '$.threshold'),"
        " model_version FROM events WHERE kind = 'drift_check' AND started_at BETWEEN ? AND ? "
        "ORDER BY started_at, id",
        (start, now),
    ):
        board.drift.append(Point(at, _num(score), version=version))
        if threshold is not None:
            board.drift_threshold = float(threshold)
    for at, accuracy, estimated, version in _rows(
        store,
        "SELECT started_at, json_extract(details, '$.accuracy'), "
        "json_extract(details, '$.estimated'), model_version FROM events "
        "WHERE kind = 'performance_check' AND started_at BETWEEN ? AND ? ORDER BY started_at, id",
        (start, now),
    ):
        board.accuracy.append(
            Point(at, _num(accuracy), version=version, estimated=_flag(estimated))
        )
    actions = _rows(
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
    for at, duration, outcome in _rows(
        store,
        "SELECT started_at, duration_s, outcome FROM events WHERE kind = 'recovery' "
        "AND action = 'service' AND started_at BETWEEN ? AND ? ORDER BY started_at, id",
        (start, now),
    ):
        board.incidents.append(Point(at, duration, label=outcome, kind="recovery"))
    recent = _rows(
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


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else to_iso(timestamp)[:16].replace("T", " ")


def serving_state(state_dir: Path, timeout: float = 1.0) -> dict[str, Any] | None:
    """The state of this project's running ``mlmedic serve`` (``.mlmedic/supervisor.json`` and
    its ``/ready``), or None when none runs."""
    import http.client

    try:
        record = json.loads((state_dir / "supervisor.json").read_text(encoding="utf-8"))
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    host = str(record.get("host") or "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    connection = http.client.HTTPConnection(host, int(record.get("port") or 0), timeout=timeout)
    try:
        connection.request("GET", "/ready")
        answer = connection.getresponse()
        body = json.loads(answer.read(20_000) or b"{}")
    except (OSError, ValueError) as exc:
        return {"ready": False, "why": f"/ready did not answer: {exc}"}
    finally:
        connection.close()
    return {
        "ready": answer.status == 200,
        "fallback": body.get("fallback"),
        "why": body.get("detail", ""),
    }
