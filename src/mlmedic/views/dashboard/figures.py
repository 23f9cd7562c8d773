"""The dashboard's figures, each from aggregate queries of the event store: auto-fix success,
rollbacks, retrains, recoveries and MTTR, the last monitoring pass, the champion, the policy's
numbers, and overall health part by part; and the state of a running server."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mlmedic.model.registry import read_pointer
from mlmedic.store import logstore
from mlmedic.store.events import EventLog
from mlmedic.store.logstore import newest_write
from mlmedic.views.dashboard.board import (
    DAY,
    Figure,
    HealthPart,
    flag,
    num,
    percentile,
    query,
    ratio,
    seconds,
)


def outcomes(store: EventLog, kind: str, since: float, action: str | None = None) -> dict:
    """Events of ``kind`` (and ``action``) since ``since``, counted by outcome."""
    sql = "SELECT outcome, COUNT(*) FROM events WHERE kind = ? AND started_at >= ?"
    params: tuple[Any, ...] = (kind, since)
    if action is not None:
        sql += " AND action = ?"
        params += (action,)
    return {outcome: int(n) for outcome, n in query(store, sql + " GROUP BY outcome", params)}


def auto_fix(store: EventLog, since: float, days: float) -> Figure:
    rows = outcomes(store, "data_fix", since)
    total = sum(rows.values())
    passed = int(rows.get("success", 0))
    value = passed / total if total else None
    return Figure(
        "auto_fix",
        "auto-fix success rate",
        value,
        "no data yet" if value is None else f"{value * 100:.0f} %",
        "no data-fix runs" if not total else f"{ratio(passed, total)} re-checks passed",
        "data-fix runs whose re-check passed / all data-fix runs",
        f"{days:g} days",
    )


def rollbacks(store: EventLog, since: float, days: float) -> Figure:
    rows = query(
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


def retrains(store: EventLog, since: float, days: float) -> Figure:
    rows = outcomes(store, "retrain", since)
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


def recoveries(
    store: EventLog, since: float, days: float
) -> tuple[Figure, Figure, int, list[float]]:
    rows = outcomes(store, "recovery", since, action="service")
    recovered = int(rows.get("success", 0))
    failed = sum(v for k, v in rows.items() if k != "success")
    durations = [
        float(d)
        for (d,) in query(
            store,
            "SELECT duration_s FROM events WHERE kind = 'recovery' AND action = 'service' "
            "AND outcome = 'success' AND started_at >= ? ORDER BY duration_s",
            (since,),
        )
    ]
    mean = sum(durations) / len(durations) if durations else None
    median, p95 = percentile(durations, 0.5), percentile(durations, 0.95)
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
        "no data yet" if mean is None else seconds(mean),
        "no recoveries"
        if mean is None
        else f"median {seconds(median)} · p95 {seconds(p95)} · {len(durations):,} recoveries",
        "from detection to ready again, over the recoveries of the window",
        f"{days:g} days",
    )
    return recoveries, mttr, failed, durations


def releases(store: EventLog, limit: int = 5) -> list[dict[str, Any]]:
    """The newest shadow and canary releases (#24), newest first: how each started, its newest
    look while it ran (labelled pairs, what a verdict would be), and how it ended."""
    rows = query(
        store,
        "SELECT started_at, action, message, json_extract(details, '$.id'), "
        "json_extract(details, '$.version'), json_extract(details, '$.champion'), "
        "json_extract(details, '$.mode'), json_extract(details, '$.share'), "
        "json_extract(details, '$.labelled'), json_extract(details, '$.pairs'), "
        "json_extract(details, '$.why') FROM events WHERE kind = 'release' "
        "ORDER BY started_at, id",
    )
    found: dict[str, dict[str, Any]] = {}
    for at, action, message, key, version, champion, mode, share, labelled, pairs, why in rows:
        if action == "start":
            found[str(key)] = {
                "id": key,
                "version": version,
                "champion": champion,
                "mode": mode,
                "share": share,
                "started_at": at,
                "state": "running",
                "ended_at": None,
                "why": "",
                "labelled": 0,
                "pairs": 0,
            }
            continue
        entry = found.get(str(key))
        if entry is None:
            continue
        entry.update(labelled=labelled or entry["labelled"], pairs=pairs or entry["pairs"])
        if action == "verdict":
            entry.update(why=why or "")
        else:
            state = {"promote": "promoted", "retire": "retired", "abort": "aborted"}.get(action)
            entry.update(state=state or action, ended_at=at, why=why or message)
    return sorted(found.values(), key=lambda e: e["started_at"], reverse=True)[:limit]


def last_pass(store: EventLog) -> dict[str, Any] | None:
    rows = query(
        store,
        "SELECT started_at, json_extract(details, '$.rows'), json_extract(details, '$.action'), "
        "message, model_version FROM events WHERE kind = 'monitor' "
        "ORDER BY started_at DESC, id DESC LIMIT 1",
    )
    if not rows:
        return None
    at, rows_seen, action, message, version = rows[0]
    drift = query(
        store,
        "SELECT json_extract(details, '$.score'), json_extract(details, '$.drifted'), "
        "json_extract(details, '$.threshold') FROM events WHERE kind = 'drift_check' "
        "AND started_at <= ? ORDER BY started_at DESC, id DESC LIMIT 1",
        (at,),
    )
    performance = query(
        store,
        "SELECT json_extract(details, '$.accuracy'), json_extract(details, '$.estimated'), "
        "json_extract(details, '$.low'), json_extract(details, '$.high'), message, "
        "json_extract(details, '$.mae') "
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
            drift_score=num(score),
            drifted_features=json.loads(drifted) if drifted else [],
            drift_threshold=num(threshold),
        )
    if performance:
        accuracy, was_estimated, low, high, summary, mae = performance[0]
        if mae is not None:  # a regression's error: the interval is the MAE's
            found.update(mae=num(mae), mae_low=num(low), mae_high=num(high))
            low = high = None
        found.update(
            accuracy=num(accuracy),
            estimated=flag(was_estimated),
            accuracy_low=num(low),
            accuracy_high=num(high),
            performance=summary,
        )
    return found


def champion(store: EventLog, state_dir: Path | None) -> dict[str, Any] | None:
    """The champion from the local record (no MLflow): version, since when, its metrics."""
    if state_dir is None:
        return None

    pointer = read_pointer(state_dir)
    if not pointer:
        return None
    version = int(pointer["version"])
    moved = query(
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


def policy_numbers(
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


def error_ceiling(settings: Any, champion: dict[str, Any] | None) -> float | None:
    """A regression champion's MAE ceiling: its validation MAE plus ``max_error_increase``."""
    validated = (champion or {}).get("metrics", {}).get("mae")
    if validated is None:
        return None
    increase = (
        0.10 if settings is None else settings.self_healing.model_validation.max_error_increase
    )
    return float(validated) * (1.0 + increase)


def _quality(last_pass: dict[str, Any], floor: float, ceiling: float | None) -> HealthPart:
    """The champion's quality in the last pass: its accuracy against the floor, or a
    regression's MAE against its ceiling."""
    accuracy, mae = last_pass.get("accuracy"), last_pass.get("mae")
    kind = "estimated" if last_pass.get("estimated") else "measured"
    if mae is not None and ceiling is not None:
        score = 1.0 if mae <= ceiling else max(0.0, ceiling / float(mae)) * 0.5
        return HealthPart(
            "error", score, f"{kind} MAE {mae:.4g} against a ceiling of {ceiling:.4g}"
        )
    if accuracy is None:
        return HealthPart("accuracy", None, "not measured or estimated yet")
    score = 1.0 if accuracy >= floor else max(0.0, float(accuracy) / floor) * 0.5
    return HealthPart("accuracy", score, f"{kind} {accuracy:.3f} against a floor of {floor:.3f}")


def health_parts(
    store: EventLog,
    *,
    now: float,
    serving: dict[str, Any] | None,
    last_pass: dict[str, Any] | None,
    floor: float,
    interval_s: float,
    failed_recoveries: int,
    log: str | Path | None,
    ceiling: float | None = None,
) -> list[HealthPart]:
    """The parts of the overall health; a regression's ``accuracy`` part is its error against
    ``ceiling`` (``error_ceiling``)."""
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
    parts.append(_quality(last_pass or {}, floor, ceiling))
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
                f"last pass {seconds(age)} ago (every {seconds(interval_s)})",
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
        newest = newest_write(log)
        if newest is None:
            parts.append(HealthPart("prediction log", 0.0, "nothing logged yet"))
        else:
            age = time.time() - newest
            parts.append(
                HealthPart(
                    "prediction log",
                    1.0 if age <= 3600 else 0.0,
                    f"last written {seconds(age)} ago",
                )
            )
    return parts


def log_location(settings: Any, state_dir: Path | None) -> str | Path | None:
    """The prediction log: under ``serving.prediction_log_url`` if set, else ``.mlmedic/``."""

    url = settings.self_healing.serving.prediction_log_url if settings is not None else None
    if url is None and state_dir is None:
        return None
    return logstore.log_location(url, state_dir or Path("."), "predictions")


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
