"""Terminal views (Rich) of check reports, repair audits and events, shared by the CLI and demo."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from mlmedic.clock import to_iso
from mlmedic.data.checks import CheckReport
from mlmedic.data.repair import RepairResult
from mlmedic.events import Event


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
