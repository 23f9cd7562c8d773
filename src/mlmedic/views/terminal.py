"""Terminal views (Rich) of check reports, repair audits and events, shared by the CLI and demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from mlmedic.core.clock import to_iso
from mlmedic.data.checks import CheckReport
from mlmedic.data.repair import RepairResult
from mlmedic.store.events import Event
from mlmedic.views.dashboard import when


def _table(title: str | None, *headers: str) -> Table:
    """Headers ending in '>' are right-aligned numbers, starting with '*' never wrap (names);
    other text columns fold."""
    table = Table(title=title, header_style="bold")
    for header in headers:
        if header.endswith(">"):
            table.add_column(header[:-1], justify="right", no_wrap=True)
        elif header.startswith("*"):
            table.add_column(header[1:], no_wrap=True)
        else:
            table.add_column(header, overflow="fold")
    return table


def _examples(values: Sequence[object]) -> str:
    return ", ".join(str(v) for v in values) if values else ""


def print_report(console: Console, report: CheckReport, *, title: str = "Data checks") -> None:
    """The failed checks as a table, then a one-line verdict."""
    console.print(f"[bold]{title}[/] against {report.reference}")
    if report.failures:
        table = _table(None, "*check", "*column", "count>", "allowed>", "example rows", "detail")
        for failure in report.failures:
            table.add_row(
                failure.check,
                failure.column or "-",
                f"{failure.count:,}",
                f"{failure.allowed:,}",
                _examples(failure.examples) if failure.column else "",
                failure.detail,
            )
        console.print(table)
    style = "green" if report.passed else "red"
    mark = "PASS" if report.passed else "FAIL"
    console.print(f"[{style}]{mark}[/] {report.summary()}")


def print_report_brief(
    console: Console, report: CheckReport, *, title: str, limit: int = 6
) -> None:
    """The checks in a few lines that fit 80 columns: the verdict, then one line per failure."""
    style = "green" if report.passed else "red"
    mark = "PASS" if report.passed else "FAIL"
    console.print(f"[bold]{title}[/]: [{style}]{mark}[/] {report.summary()}", soft_wrap=True)
    for failure in report.failures[:limit]:
        where = f" in {failure.column}" if failure.column else ""
        console.print(
            f"   {failure.check}{where}: {failure.count:,} (allowed {failure.allowed:,})",
            markup=False,
        )
    if len(report.failures) > limit:
        console.print(f"   … and {len(report.failures) - limit} more (mlmedic check-data)")


def print_repair_brief(console: Console, repair: RepairResult) -> None:
    """What the repair did, by rule, and where every row went, in a few lines."""
    done: dict[str, int] = {}
    for rule in repair.rules:
        done[rule.rule] = done.get(rule.rule, 0) + rule.rows_touched
    console.print(
        "[bold]auto-fix[/]: " + ", ".join(f"{name} {n:,}" for name, n in done.items()),
        soft_wrap=True,
    )
    rows = repair.accounting()
    console.print(
        f"   rows: {rows['input_rows']:,} in = {rows['output_rows']:,} repaired"
        f" + {rows['quarantined_rows']:,} quarantined"
        f" + {rows['removed_duplicate_rows']:,} duplicates removed (every change audited)"
    )


def print_repair(console: Console, repair: RepairResult) -> None:
    """What each rule did, and where every input row went."""
    table = _table("Repairs (audited per column)", "*rule", "*column", "rows>", "before", "after")
    for rule in repair.rules:
        table.add_row(
            rule.rule,
            rule.column or "-",
            f"{rule.rows_touched:,}",
            _kv(rule.before),
            _kv(rule.after),
        )
    console.print(table)
    rows = repair.accounting()
    console.print(
        f"rows: {rows['input_rows']:,} in = {rows['output_rows']:,} repaired"
        f" + {rows['quarantined_rows']:,} quarantined"
        f" + {rows['removed_duplicate_rows']:,} duplicates removed"
    )


def _kv(values: dict) -> str:
    def fmt(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items())


def print_events(console: Console, events: Sequence[Event]) -> None:
    """One line per event: id, time, kind/action, outcome, duration, version, message."""
    for event in events:
        colour = {"success": "green", "failure": "red", "warning": "yellow"}.get(event.outcome, "")
        outcome = f"[{colour}]{event.outcome}[/]" if colour else event.outcome
        version = f" v{event.model_version}" if event.model_version else ""
        console.print(
            f"#{event.id} {to_iso(event.started_at)[:19].replace('T', ' ')} "
            f"[bold]{event.kind}[/]/{event.action} {outcome} ({event.duration_s:.2f}s){version}"
            f" — {event.message}",
            soft_wrap=False,
        )


# ---------------------------------------------------------------- narration of a pipeline run
# One plain line per step, for ``say``: the console of ``mlmedic run`` and the monitor's retrain.


def print_replay(console: Console, result: Any) -> None:
    """The summary of a replay (``mlmedic.heal.replay.ReplayResult``) against its baselines."""
    table = _table(
        f"replay: policy {result.policy}, {len(result.windows)} windows "
        f"({result.seconds_per_window:.2f} s per monitoring pass)",
        "strategy",
        "mean MAE" if result.metric == "mae" else "mean accuracy",
        "worst window",
        "retrains",
        "rollbacks",
        "needless alerts",
    )

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for summary in result.summaries:
        mae = result.metric == "mae"
        table.add_row(
            summary.name,
            number(summary.mean_mae if mae else summary.mean_accuracy),
            number(summary.worst_mae if mae else summary.worst_accuracy),
            str(summary.retrains),
            str(summary.rollbacks),
            str(summary.needless_alerts),
        )
    console.print(table)
    if result.validation_accuracy is not None:
        console.print(
            f"needless alerts: alerts on windows where the model in force scored at least its "
            f"validation accuracy ({result.validation_accuracy:.3f}) minus the allowed drop",
            soft_wrap=True,
        )


# ---------------------------------------------------------------- the dashboard (terminal)


def dashboard_view(board: Any) -> Any:
    """The terminal dashboard (``mlmedic.views.dashboard.Dashboard``) as one Rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    grid = Table.grid(padding=(0, 1), expand=True)
    for _ in range(3):
        grid.add_column(ratio=1)
    cells = []
    for figure in board.figures:
        body = Text()
        body.append(f"{figure.shown}\n", style="bold")
        body.append(f"{figure.detail}\n")
        body.append(f"window: {figure.window}", style="dim")
        cells.append(Panel(body, title=figure.title, title_align="left", padding=(0, 1)))
    for row in range(0, len(cells), 3):
        grid.add_row(*cells[row : row + 3])
    parts = _table(None, "health part", "score", "why")
    for part in board.health_parts:
        score = "n/a" if part.score is None else f"{part.score * 100:.0f} %"
        style = "dim" if part.score is None else ("green" if part.score >= 0.99 else "yellow")
        parts.add_row(part.name, Text(score, style=style), part.why)
    side = _table(None, "", "")
    champion = board.champion
    side.add_row(
        "champion",
        "no champion yet"
        if not champion
        else f"v{champion['version']} since {when(champion['since'])}"
        + (
            " — " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(champion["metrics"].items()))
            if champion["metrics"]
            else ""
        ),
    )
    last = board.last_pass
    side.add_row(
        "last pass",
        "no monitoring pass yet"
        if not last
        else f"{when(last['at'])}: drift "
        + ("-" if last.get("drift_score") is None else f"{last['drift_score']:.2f}")
        + f" ({', '.join(last.get('drifted_features') or []) or 'no feature drifted'}); "
        + f"{last.get('performance') or 'no performance'}",
    )
    side.add_row(
        "cooldown",
        f"active until {when(board.cooldown_until)}" if board.cooldown_until else "not active",
    )
    side.add_row(
        "open alerts",
        "\n".join(f"{when(a['at'])} {a['message']}" for a in board.alerts)
        or "none in the last 24 h",
    )
    side.add_row(
        "releases",
        "\n".join(
            f"{r['mode']} v{r['version']} beside v{r['champion']}: {r['state']}"
            + (f" ({r['labelled']:,} labelled pairs)" if r["state"] == "running" else "")
            + (f" — {r['why']}" if r["why"] else "")
            for r in board.releases
        )
        or "none",
    )
    title = Text(f"mlmedic — {board.project}   ", style="bold")
    title.append(f"{when(board.generated_at)} UTC", style="dim")
    items: list[Any] = [title]
    if board.empty:
        items.append(Text("no data yet: run 'mlmedic run', then 'mlmedic monitor'", style="yellow"))
    legend = _table(None, "figure", "definition")
    for figure in board.figures:
        legend.add_row(figure.title, Text(figure.definition, style="dim"))
    items += [grid, side, parts, legend]
    return Group(*items)
