"""Each monitoring pass as a report: JSON files in the project (``monitoring.reports_dir``,
``metrics_dir``, ``alerts_dir``) and a run of the champion in MLflow (``monitor vN``: metric
history, the report as JSON and a self-contained HTML page)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmedic.core.clock import to_iso
from mlmedic.core.errors import MedicError
from mlmedic.core.htmlstyle import CSS, escape
from mlmedic.model.project import Project
from mlmedic.store.events import finite

if TYPE_CHECKING:
    from mlmedic.heal.monitor import MonitorResult

Say = Callable[[str], None]


def log_to_mlflow(
    project: Project, result: MonitorResult, version: int, source: str, now: float, say: Say
) -> None:
    """The pass in the champion's MLflow monitoring run (``monitor vN``), so the MLflow UI
    shows drift history beside the model. A registry that cannot be reached costs the pass
    nothing but this line: the report is also in ``monitoring.reports_dir``."""
    report = {"time": to_iso(now), "model_version": version, "source": source}
    report.update(result.to_dict())
    metrics: dict[str, float] = {"rows": float(result.rows)}
    if result.drift is not None and result.drift.score is not None:
        metrics["drift_score"] = float(result.drift.score)
        metrics["drifted_features"] = float(len(result.drift.drifted_features))
    performance = result.performance
    if performance is not None and performance.rows:
        prefix = "estimated_" if performance.estimated else ""
        metrics[f"{prefix}accuracy"] = float(performance.accuracy)  # NaN for a regression: left out
        if performance.mae is not None:  # a regression's error
            metrics[f"{prefix}mae"] = float(performance.mae)
            if performance.rmse is not None:
                metrics[f"{prefix}rmse"] = float(performance.rmse)
        if not performance.estimated:
            metrics["measured_rows"] = float(performance.rows)
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    title = f"{project.registry.model_name} v{version}: monitoring pass {to_iso(now)}"
    try:
        project.registry.version_store.log_pass(
            version,
            metrics=metrics,
            report=finite(report),
            html=pass_page(report, title=title),
            at=now,
        )
    except MedicError as exc:
        say(f"the pass was not logged to MLflow: {exc}")


def write_reports(
    project: Project, result: MonitorResult, version: int, source: str, now: float, say: Say
) -> None:
    """Each pass as files too (``monitoring.reports_dir``, ``metrics_dir``, ``alerts_dir``,
    relative to the project): the drift report, the performance, the alerts."""
    paths = project.settings.self_healing.monitoring
    stamp = to_iso(now).replace(":", "-")[:19]
    head = {"time": to_iso(now), "model_version": version, "source": source}
    documents = {
        paths.reports_dir: {
            **head,
            "rows": result.rows,
            "decision": result.decision.summary(),
            "action": result.acted,
            "drift": result.drift.summary() if result.drift else None,
            "drift_score": result.drift.score if result.drift else None,
            "drifted_features": result.drift.drifted_features if result.drift else [],
        },
        paths.metrics_dir: {
            **head,
            "performance": result.performance.to_dict() if result.performance else None,
        },
    }
    if result.decision.alerts:
        documents[paths.alerts_dir] = {**head, "alerts": result.decision.alerts}
    for folder, document in documents.items():
        target = Path(folder) if Path(folder).is_absolute() else project.root / folder
        try:
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{stamp}-v{version}.json").write_text(
                json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            say(f"cannot write the pass report into {target}: {exc}")


def pass_page(report: dict[str, Any], *, title: str) -> str:
    """One monitoring pass (``MonitorResult.to_dict()``) as a self-contained page: the decision,
    the drift score against its threshold, each feature's test, statistic and verdict, and the
    performance (measured, or estimated with its interval)."""
    drift = report.get("drift") or {}
    decision = report.get("decision") or {}
    performance = report.get("performance") or {}
    rows = []
    for f in drift.get("features", []):
        verdict = {True: '<b class="bad">drifted</b>', False: '<span class="ok">stable</span>'}
        said = verdict.get(f.get("drifted"), '<span class="muted">too few rows</span>')
        weight = f.get("weight")
        rows.append(
            f"<tr><td>{escape(f['name'])}</td>{_test_cells(f)}"
            f"<td>{'-' if weight is None else f'{100 * float(weight):.0f} %'}</td>"
            f"<td>{said}</td><td>{_histogram(f.get('histogram'))}</td></tr>"
        )
    score = drift.get("score")
    figures = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
        for k, v in performance.items()
        if isinstance(v, str | int | float | bool) or v is None
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
        f'<div class="sub">{escape(report.get("rows", 0))} rows · decision: '
        f"{escape(decision.get('summary', decision.get('action', '')))}"
        + (f" · {escape(report['action'])}" if report.get("action") else "")
        + "</div>"
        f'<div class="box"><h2>Drift</h2><p>score '
        f"{'-' if score is None else f'{float(score):.3f}'} against the threshold "
        f"{float(drift.get('threshold', 0.0)):.3f}: "
        f"{'<b class=bad>drift</b>' if drift.get('drift') else '<span class=ok>no drift</span>'}"
        f"</p><table><tr><th>feature</th><th>test</th><th>statistic</th>"
        f"<th>p-value or distance</th><th>drifted when</th><th>importance</th><th></th>"
        f'<th>reference <span style="color:#9aa5b1">&#9632;</span> and this pass '
        '<span style="color:#1f6feb">&#9632;</span></th></tr>'
        f"{''.join(rows)}</table></div>"
        f'<div class="box"><h2>Performance</h2><table>{figures or "<tr><td>none</td></tr>"}'
        "</table></div></body></html>"
    )


TESTS = {"ks": ("Kolmogorov-Smirnov", "D"), "chi_square": ("chi-square", "χ²")}


def _number(value: Any) -> str:
    """A figure people read: 3 significant digits, scientific below 0.001."""
    number = float(value)
    if number == 0 or 0.001 <= abs(number) < 10_000:
        return f"{number:.3g}" if abs(number) < 1 else f"{number:,.3f}".rstrip("0").rstrip(".")
    return f"{number:.2e}"


def _test_cells(feature: dict[str, Any]) -> str:
    """A test's statistic and p-value shown as what they are (the p-value against alpha), a
    distance against its threshold."""
    test, statistic = feature.get("test", ""), feature.get("statistic")
    threshold = feature.get("threshold", 0.0)
    if test in TESTS:
        name, symbol = TESTS[test]
        p_value = feature.get("p_value")
        return (
            f"<td>{escape(name)}</td><td>{symbol} = {_number(statistic)}</td>"
            f"<td>p = {'-' if p_value is None else _number(p_value)}</td>"
            f"<td>p &lt; {_number(threshold)}</td>"
        )
    if statistic is None:
        return f"<td>{escape(test)}</td><td>-</td><td>-</td><td>-</td>"
    return (
        f"<td>{escape(test.replace('_', ' '))}</td><td>-</td>"
        f"<td>distance {_number(statistic)}</td><td>distance &gt; {_number(threshold)}</td>"
    )


def _histogram(histogram: dict[str, Any] | None, width: int = 168, height: int = 36) -> str:
    """The reference's and this pass's shares per bin as a small inline SVG (grey and blue bar
    pairs), each bin's label and both shares in its tooltip."""
    if not histogram or not histogram.get("bins"):
        return ""
    bins = histogram["bins"]
    reference, current = histogram["reference"], histogram["current"]
    top = max([*reference, *current, 1e-9])
    step = width / len(bins)
    bar = max(step / 2 - 0.5, 0.5)
    parts = []
    for i, label in enumerate(bins):
        for j, (share, colour) in enumerate(((reference[i], "#9aa5b1"), (current[i], "#1f6feb"))):
            tall = height * float(share) / top
            parts.append(
                f'<rect x="{i * step + j * bar:.1f}" y="{height - tall:.1f}" width="{bar:.1f}" '
                f'height="{tall:.1f}" fill="{colour}"><title>{escape(label)}: reference '
                f"{100 * float(reference[i]):.1f} %, this pass {100 * float(current[i]):.1f} %"
                "</title></rect>"
            )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        + "".join(parts)
        + "</svg>"
    )
