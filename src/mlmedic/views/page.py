"""The dashboard as one self-contained HTML page: inline CSS and SVG, no script, no font or
anything else from the network; it opens from disk with no server. ``refresh`` adds a
``<meta http-equiv="refresh">`` for the live ``GET /dashboard`` of a running server.

The same components (``tiles``, ``line_chart``, ``action_strip``, ``heatmap``) draw a replay's
timeline and baselines (``replay_page``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from mlmedic.core.htmlstyle import CSS
from mlmedic.core.htmlstyle import escape as _e
from mlmedic.views.dashboard import Dashboard, Figure, Point, when

WIDTH, HEIGHT, PAD = 880, 180, 36
COLOURS = {
    "data_fix": "#2f7ed8",
    "retrain": "#8e44ad",
    "rollback": "#e67e22",
    "recovery": "#c0392b",
    "deploy": "#27ae60",
}


def tiles(figures: Sequence[Figure]) -> str:
    out = ['<div class="tiles">']
    for f in figures:
        out.append(
            f'<div class="tile" id="tile-{_e(f.key)}" data-value="{_e(f.shown)}">'
            f'<div class="t">{_e(f.title)}</div><div class="v">{_e(f.shown)}</div>'
            f'<div class="d">{_e(f.detail)}</div>'
            f'<div class="w">{_e(f.definition)} — window: {_e(f.window)}</div></div>'
        )
    out.append("</div>")
    return "".join(out)


def _scale(values: Sequence[float], low: float, high: float, size: float) -> list[float]:
    span = (high - low) or 1.0
    return [size - (v - low) / span * size for v in values]


def line_chart(
    title: str,
    points: Sequence[Point],
    start: float,
    end: float,
    *,
    low: float = 0.0,
    high: float = 1.0,
    threshold: float | None = None,
    marks: Sequence[Point] = (),
    more: Sequence[tuple[str, Sequence[Point], str]] = (),
    name: str = "",
) -> str:
    """Values over time; hollow dots are estimates; dashed verticals are ``marks`` (version
    changes); a red line is ``threshold``; ``more``: further series (name, points, colour)
    drawn beside the first, with a legend."""
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    span = (end - start) or 1.0

    def x(at: float) -> float:
        return PAD + (at - start) / span * inner_w

    def y(value: float) -> float:
        return PAD + _scale([value], low, high, inner_h)[0]

    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<rect x="{PAD}" y="{PAD}" width="{inner_w}" height="{inner_h}" fill="#fafbfc" '
        'stroke="#dde2e8"/>',
        f'<text x="{PAD}" y="{PAD - 10}">{_e(title)}</text>',
        f'<text x="4" y="{PAD + 4}">{high:g}</text><text x="4" y="{PAD + inner_h}">{low:g}</text>',
        f'<text x="{PAD}" y="{HEIGHT - 8}">{_e(when(start))}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{_e(when(end))}</text>',
    ]
    if threshold is not None:
        parts.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
            'stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{WIDTH - PAD - 4}" y="{y(threshold) - 4:.1f}" text-anchor="end">'
            f"threshold {threshold:g}</text>"
        )
    for mark in marks:
        parts.append(
            f'<line x1="{x(mark.at):.1f}" x2="{x(mark.at):.1f}" y1="{PAD}" y2="{PAD + inner_h}" '
            f'stroke="#27ae60" stroke-dasharray="2 3"/><text x="{x(mark.at) + 3:.1f}" '
            f'y="{PAD + 12}">{_e(mark.label)}</text>'
        )
    drawn = 0
    everything = [(name, points, "#2f7ed8"), *more]
    for number, (label, series, colour) in enumerate(everything):
        known = [p for p in series if p.value is not None]
        if not known:
            continue
        drawn += 1
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x(p.at):.1f},{y(float(p.value)):.1f}"  # type: ignore[arg-type]
            for i, p in enumerate(known)
        )
        parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for p in known:
            fill = "#fff" if p.estimated else colour
            parts.append(
                f'<circle cx="{x(p.at):.1f}" cy="{y(float(p.value)):.1f}" r="3" '  # type: ignore[arg-type]
                f'fill="{fill}" stroke="{colour}"><title>{_e(label)} {_e(when(p.at))}: '
                f"{float(p.value):.3f}{' (estimated)' if p.estimated else ''}</title></circle>"  # type: ignore[arg-type]
            )
        if label:
            parts.append(
                f'<text x="{WIDTH - PAD - 4}" y="{PAD + 14 + 13 * number}" text-anchor="end" '
                f'style="fill:{colour}">{_e(label)}</text>'
            )
    if not drawn:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def action_strip(title: str, actions: Sequence[Point], start: float, end: float) -> str:
    """Every action on one time axis, a row per kind."""
    kinds = ["data_fix", "deploy", "retrain", "rollback", "recovery"]
    row_h, height = 22, PAD + 22 * len(kinds) + 20
    inner_w, span = WIDTH - 2 * PAD - 60, (end - start) or 1.0
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}"><text x="{PAD}" y="{PAD - 14}">{_e(title)}</text>'
    ]
    for row, kind in enumerate(kinds):
        top = PAD + row * row_h
        parts.append(
            f'<text x="{PAD}" y="{top + 14}">{kind.replace("_", " ")}</text>'
            f'<line x1="{PAD + 60}" x2="{WIDTH - PAD}" y1="{top + 10}" y2="{top + 10}" '
            'stroke="#eef0f3"/>'
        )
        for p in (a for a in actions if a.kind == kind):
            cx = PAD + 60 + (p.at - start) / span * inner_w
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{top + 10}" r="5" fill="{COLOURS.get(kind, "#555")}">'
                f"<title>{_e(when(p.at))} {_e(p.label)}"
                f"{' v' + _e(p.version) if p.version else ''}</title></circle>"
            )
    parts.append(
        f'<text x="{PAD + 60}" y="{height - 6}">{_e(when(start))}</text>'
        f'<text x="{WIDTH - PAD}" y="{height - 6}" text-anchor="end">{_e(when(end))}</text></svg>'
    )
    return "".join(parts)


def heatmap(rows: Sequence[dict[str, Any]]) -> str:
    """Per-feature drift of recent passes: a column per pass, a row per feature."""
    if not rows:
        return '<p class="muted">no drift checks yet</p>'
    names: list[str] = []
    for row in rows:
        for f in row["features"]:
            if f["name"] not in names:
                names.append(f["name"])
    cell, left, top = 22, 150, 24
    width, height = left + cell * len(rows) + 10, top + cell * len(names) + 10
    parts = [
        f'<svg role="img" aria-label="per-feature drift" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><text x="0" y="14">recent passes →</text>'
    ]
    for r, name in enumerate(names):
        parts.append(f'<text x="0" y="{top + r * cell + 15}">{_e(name)[:22]}</text>')
    for c, row in enumerate(rows):
        by_name = {f["name"]: f for f in row["features"]}
        for r, name in enumerate(names):
            f = by_name.get(name)
            colour = (
                "#eef0f3"
                if f is None or f["drifted"] is None
                else ("#e74c3c" if f["drifted"] else "#d5f5e3")
            )
            stat = "" if f is None or f["statistic"] is None else f"{float(f['statistic']):.3f}"
            parts.append(
                f'<rect x="{left + c * cell}" y="{top + r * cell}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{colour}"><title>{_e(name)} at {_e(when(row["at"]))}'
                f": {_e(stat)}{' drifted' if f and f['drifted'] else ''}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _side(board: Dashboard) -> str:
    champion = board.champion
    if champion:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(champion["metrics"].items()))
        champ = (
            f"v{champion['version']} of {_e(champion['model_name'])} since "
            f"{_e(when(champion['since']))}" + (f" — {_e(metrics)}" if metrics else "")
        )
    else:
        champ = "no champion yet"
    last = board.last_pass
    if last:
        drifted = ", ".join(last.get("drifted_features") or []) or "none"
        score = last.get("drift_score")
        passed = (
            f"{_e(when(last['at']))}: drift score "
            f"{'-' if score is None else f'{score:.2f}'} (drifted: {_e(drifted)}); "
            f"{_e(last.get('performance') or 'no performance')}; action {_e(last.get('action'))}"
        )
    else:
        passed = "no monitoring pass yet"
    cooldown = (
        f"active until {_e(when(board.cooldown_until))}" if board.cooldown_until else "not active"
    )
    alerts = (
        "".join(f"<li>{_e(when(a['at']))} {_e(a['message'])}</li>" for a in board.alerts)
        if board.alerts
        else "<li class='muted'>none in the last 24 h</li>"
    )
    releases = (
        "".join(
            f"<li>{_e(r['mode'])} v{r['version']} beside v{r['champion']}, since "
            f"{_e(when(r['started_at']))}: <b>{_e(r['state'])}</b>"
            + (f" — {r['labelled']:,} labelled pairs" if r["state"] == "running" else "")
            + (f" — {_e(r['why'])}" if r["why"] else "")
            + "</li>"
            for r in board.releases
        )
        if board.releases
        else "<li class='muted'>none: every candidate went straight to traffic</li>"
    )
    parts_rows = "".join(
        f"<tr><td>{_e(p.name)}</td><td class='{_grade(p.score)}'>"
        f"{'n/a' if p.score is None else f'{p.score * 100:.0f} %'}</td><td>{_e(p.why)}</td></tr>"
        for p in board.health_parts
    )
    return (
        '<div class="box"><table>'
        f"<tr><th>champion</th><td id='champion'>{champ}</td></tr>"
        f"<tr><th>last pass</th><td id='last-pass'>{passed}</td></tr>"
        f"<tr><th>cooldown</th><td>{cooldown}</td></tr>"
        f"<tr><th>open alerts</th><td><ul style='margin:0;padding-left:18px'>{alerts}</ul>"
        "</td></tr>"
        "<tr><th>releases</th><td><ul id='releases' style='margin:0;padding-left:18px'>"
        f"{releases}</ul></td></tr></table></div>"
        '<div class="box"><b>overall health, part by part</b><table id="health-parts">'
        f"{parts_rows}</table></div>"
    )


def _grade(score: float | None) -> str:
    if score is None:
        return "muted"
    return "ok" if score >= 0.99 else ("warn" if score >= 0.5 else "bad")


def page(board: Dashboard, *, refresh: int | None = None) -> str:
    """The dashboard page."""
    start, end = board.since, board.generated_at
    versions = [
        Point(p.at, None, label=f"v{p.version}")
        for p in board.actions
        if p.kind in ("deploy", "rollback") and p.version
    ]
    head = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        + (f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else "")
        + f"<title>mlmedic — {_e(board.project)}</title><style>{CSS}</style></head><body>"
    )
    empty = (
        '<div class="box">no data yet: run <code>mlmedic run</code>, then '
        "<code>mlmedic monitor</code> and <code>mlmedic serve</code>; this page fills as they "
        "act.</div>"
        if board.empty
        else ""
    )
    incidents = "".join(
        f"<tr><td>{_e(when(p.at))}</td><td>{_e(p.label)}</td><td>"
        f"{'-' if p.value is None else f'{float(p.value):.2f} s'}</td></tr>"
        for p in board.incidents[-20:]
    )
    return "".join(
        [
            head,
            f"<h1>mlmedic — {_e(board.project)}</h1>",
            f'<div class="sub">generated {_e(when(board.generated_at))} UTC · timelines since '
            f"{_e(when(board.since))}</div>",
            empty,
            tiles(board.figures),
            _side(board),
            "<h2>Drift score per monitoring pass</h2>",
            line_chart(
                "drift score",
                board.drift,
                start,
                end,
                threshold=board.drift_threshold,
                marks=versions,
            ),
            "<h2>Accuracy per pass</h2><div class='legend'><span><i class='sw' "
            "style='background:#2f7ed8'></i>measured</span><span><i class='sw' "
            "style='border:1px solid #2f7ed8'></i>estimated</span><span><i class='sw' "
            "style='background:#27ae60'></i>model version changes</span></div>",
            line_chart("accuracy", board.accuracy, start, end, marks=versions),
            *(
                [
                    "<h2>Error (MAE) per pass</h2>",
                    line_chart(
                        "MAE",
                        board.error,
                        start,
                        end,
                        high=float(f"{max(p.value or 0 for p in board.error) * 1.05:.3g}"),
                        marks=versions,
                    ),
                ]
                if board.error
                else []
            ),
            "<h2>Actions</h2>",
            action_strip(
                "fixes, deploys, retrains, rollbacks, recoveries", board.actions, start, end
            ),
            "<h2>Incidents</h2>",
            f"<div class='box'><table><tr><th>detected</th><th>outcome</th><th>MTTR</th></tr>"
            f"{incidents or '<tr><td class=muted>none</td></tr>'}</table></div>",
            "<h2>Per-feature drift, recent passes</h2>",
            f"<div class='box'>{heatmap(board.heatmap)}</div>",
            "</body></html>",
        ]
    )


def replay_page(result: Any) -> str:
    """A replay (``mlmedic.heal.replay.ReplayResult``) as one self-contained page: its summary
    against the baselines, drift per window, the accuracy of the model in force beside never-heal
    and retrain-every-window, and every action on one time axis — the dashboard's components."""
    from datetime import datetime

    def at(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    windows = result.windows
    start, end = (at(windows[0].start), at(windows[-1].end)) if windows else (0.0, 1.0)
    drift = [Point(at(w.end), w.drift_score) for w in windows]
    mae = result.metric == "mae"  # a regression: errors, lower is better
    name = "MAE" if mae else "accuracy"
    accuracy = [Point(at(w.end), w.mae if mae else w.accuracy) for w in windows]
    never = [Point(at(w.end), w.baselines.get("never heal")) for w in windows]
    every = [Point(at(w.end), w.baselines.get("retrain every window")) for w in windows]
    actions = [
        Point(
            at(w.end), None, label=w.acted or w.action, kind=w.action, version=str(w.model_version)
        )
        for w in windows
        if w.action in ("retrain", "rollback")
    ]
    versions = []
    for before, after in itertools.pairwise(windows):
        if after.model_version != before.model_version:
            versions.append(Point(at(after.start), None, label=f"v{after.model_version}"))

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}" if mae else f"{value:.3f}"

    summary = [
        Figure(
            s.name.replace(" ", "_"),
            s.name,
            s.mean_mae if mae else s.mean_accuracy,
            shown(s.mean_mae if mae else s.mean_accuracy),
            f"worst window {shown(s.worst_mae if mae else s.worst_accuracy)} · "
            f"{s.retrains} retrains · {s.rollbacks} rollbacks · "
            f"{s.needless_alerts} needless alerts",
            f"mean {name} of the model in force over the replayed windows",
            f"{len(windows)} windows",
        )
        for s in result.summaries
    ]
    lows = [p.value for p in (*accuracy, *never, *every) if p.value is not None]
    low = max(0.0, min(lows) - 0.05) if lows and not mae else 0.0
    high = max(lows, default=1.0) * 1.05 if mae else 1.0  # errors have no ceiling of 1
    return "".join(
        [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            f"<title>mlmedic replay — policy {_e(result.policy)}</title><style>{CSS}</style>",
            "</head><body>",
            f"<h1>mlmedic replay — policy {_e(result.policy)}</h1>",
            f'<div class="sub">{len(windows)} windows · {result.seconds_per_window:.2f} s per '
            "monitoring pass</div>",
            tiles(summary),
            "<h2>Drift score per window</h2>",
            line_chart("drift score", drift, start, end, threshold=0.5, marks=versions),
            f"<h2>{name.capitalize() if not mae else name} of the model in force</h2>",
            line_chart(
                name,
                accuracy,
                start,
                end,
                low=round(low, 2),
                high=float(f"{high:.3g}"),
                marks=versions,
                name="mlmedic",
                more=[("never heal", never, "#95a5a6"), ("retrain every window", every, "#e67e22")],
            ),
            "<h2>Actions</h2>",
            action_strip("retrains and rollbacks", actions, start, end),
            "</body></html>",
        ]
    )
