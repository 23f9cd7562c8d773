"""Stages 4-5: ``monitor`` and its backtest ``replay``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlmedic.cli import console
from mlmedic.cli.common import ProjectDir, app, open_project, plain, print_json, progress
from mlmedic.core.errors import UsageError

if TYPE_CHECKING:
    from mlmedic.model.project import Project


def _monitor_options(
    batch: str | None,
    every: str | None,
    once: bool,
    as_json: bool,
    time_column: str | None,
    dask: str | None,
) -> float | None:
    """The options of ``monitor`` checked together: the interval of ``--every`` (seconds), or
    ``UsageError`` for a combination that cannot be used."""
    from mlmedic.core.clock import parse_duration

    if sum(x is not None for x in (batch, every)) + once > 1:
        raise UsageError(
            "--batch, --every and --once: choose one (a file, a schedule, or one pass now)"
        )
    try:
        seconds = parse_duration(every) if every else None
    except ValueError as exc:
        raise UsageError(f"--every: {exc}") from None
    if seconds is not None and seconds <= 0:
        raise UsageError(f"--every: '{every}' is not a positive interval; use e.g. 30m, 6h")
    if as_json and every is not None:
        raise UsageError("--json prints one pass: use it with --batch or --once, not --every")
    if time_column is not None and batch is None:
        raise UsageError("--time-column dates the rows of a --batch; use it with --batch")
    if dask is not None and batch is not None:
        raise UsageError("--dask profiles the prediction log; --batch reads one file here")
    return seconds


def _production_folder(project: Project, say: Callable[[str], None]) -> str | None:
    """The design's drop folder of production data (``monitoring.production_data_path``), when
    it exists: what ``mlmedic monitor`` with no option passes over once."""
    production = project.settings.self_healing.monitoring.production_data_path
    if not production:
        return None
    folder = Path(production) if Path(production).is_absolute() else project.root / production
    if not folder.exists():
        return None
    say(f"one pass over monitoring.production_data_path: {folder}")
    return str(folder)


@app.command()
def monitor(
    batch: Annotated[
        str | None,
        typer.Option("--batch", help="One pass over this table (a file, folder or URL)."),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Run a pass every interval (6h, 30m) until stopped."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--retrain-data",
            help="Training data to retrain on (a table or URL; default: "
            "monitoring.reference_data_path).",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="One pass over the prediction log since the last, then exit."),
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Profile each window of the prediction log on this Dask scheduler "
            "(tcp://host:8786), part file by part file.",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the pass as one JSON document (with --batch or --once)."
        ),
    ] = False,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time-column",
            help="With --batch: the pass happens at this column's newest time (data time: "
            "cooldowns of a backfill as in replay; default: the contract's date/time column).",
        ),
    ] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stages 4-5: drift and performance -> retrain, roll back, or alert."""
    from mlmedic.heal.monitor import Monitor

    seconds = _monitor_options(batch, every, once, as_json, time_column, dask)
    project = open_project(project_dir)
    screen = console.err if as_json else console.out  # with --json the narration goes to stderr
    sink = [plain(screen)]

    def say(line: str) -> None:
        sink[0](line)

    runner = Monitor(project, reference_data=reference, say=say, dask_scheduler=dask)

    def one_pass(start: str, work: Callable[[], Any]) -> Any:
        with progress(screen, start) as narrate:
            sink[0] = narrate
            try:
                return work()
            finally:
                sink[0] = plain(screen)

    def report(result: Any) -> None:  # what was done is narrated as it happens
        if as_json:
            print_json({"pass": True, **result.to_dict()})

    if batch is None and every is None and not once:
        batch = _production_folder(project, say)
    if batch is not None:
        report(
            one_pass(f"reading {batch}", lambda: runner.run_batch(batch, time_column=time_column))
        )
        return
    if once:  # for a scheduler (cron, a Kubernetes CronJob): the log since the last pass
        interval = project.settings.monitoring.monitoring_interval_hours * 3600.0
        if not runner.claim_pass(interval):
            say("another monitor has this interval's pass; nothing to do")
            if as_json:
                print_json({"pass": False, "why": "another monitor has this interval's pass"})
            return
        last = project.events.last("monitor")
        since_last = last.details.get("until") if last else None
        report(
            one_pass(
                "reading the prediction log",
                lambda: runner.run_window(since_last, project.clock.now()),
            )
        )
        return
    if as_json:
        raise UsageError("--json prints one pass: use it with --batch or --once")
    console.out.print("monitoring the prediction log; Ctrl-C to stop")
    runner.run_forever(every_seconds=seconds)


@app.command()
def replay(
    history: Annotated[
        Path,
        typer.Argument(help="The history: a CSV/Parquet file, or a folder of files in order."),
    ],
    target: Annotated[str, typer.Option("--target", "-t", help="The label column.")],
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            "-r",
            help="Train the first model on this (default: the first fifth of the history).",
            dir_okay=False,
        ),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option("--time-column", help="Cut windows by this date/time column (data time)."),
    ] = None,
    every: Annotated[
        str, typer.Option("--every", help="One monitoring pass per interval of data time.")
    ] = "6h",
    label_delay: Annotated[
        str, typer.Option("--label-delay", help="How long after its row each label arrives.")
    ] = "0s",
    policy: Annotated[
        str, typer.Option("--policy", help="impact (retrain on evidence of harm) or drift.")
    ] = "impact",
    window_rows: Annotated[
        int,
        typer.Option("--window-rows", help="Rows per window when there is no time column.", min=1),
    ] = 1000,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the timeline and summary as one JSON document."),
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Also write the timeline and summary as JSON here.", dir_okay=False
        ),
    ] = None,
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Write the timeline and baselines as one HTML page.", dir_okay=False
        ),
    ] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Backtest the healing loop on a history: what mlmedic would have done, and gained."""
    from mlmedic.core.clock import parse_duration
    from mlmedic.heal.replay import replay as run_replay

    try:
        every_seconds = parse_duration(every)
        delay = parse_duration(label_delay)
    except ValueError as exc:
        raise UsageError(f"--every/--label-delay: {exc}") from None
    if every_seconds <= 0:
        raise UsageError(f"--every: '{every}' is not a positive interval; use e.g. 6h")
    if not history.exists():
        raise UsageError(f"{history}: no such file or folder")
    settings_from = project_dir.resolve() if project_dir.resolve().is_dir() else None
    to_stdout = as_json
    with progress(console.err if to_stdout else console.out, f"replaying {history}") as narrate:
        result = run_replay(
            history,
            target=target,
            reference=reference,
            time_column=time_column,
            every_seconds=every_seconds,
            label_delay_seconds=delay,
            policy=policy,
            window_rows=window_rows,
            settings_from=settings_from,
            say=narrate,
        )
    from mlmedic.views.terminal import print_replay

    if to_stdout:
        print_json(result.to_dict())
    else:
        print_replay(console.out, result)
    if json_out is not None:
        import json

        try:
            json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--out {json_out}: cannot write it ({exc.strerror})") from None
        (console.err if to_stdout else console.out).print(f"wrote {json_out}", soft_wrap=True)
    if html_out is not None:
        from mlmedic.views.page import replay_page

        try:
            html_out.write_text(replay_page(result), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--html {html_out}: cannot write it ({exc.strerror})") from None
        (console.err if to_stdout else console.out).print(f"wrote {html_out}", soft_wrap=True)
