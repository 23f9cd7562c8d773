"""What happened: ``dashboard``, ``logs``, and the narrated ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlmedic.cli import console
from mlmedic.cli.common import ProjectDir, app, open_project, print_json
from mlmedic.core.errors import ProjectError, UsageError


@app.command()
def dashboard(
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Write the dashboard as one self-contained HTML page.", dir_okay=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    every: Annotated[
        str, typer.Option("--every", help="Interval between refreshes with --watch (5s, 1m).")
    ] = "5s",
    window: Annotated[
        str | None,
        typer.Option("--window", help="One window for every figure (7d, 24h) instead of theirs."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Timelines from this time (ISO) or duration ago (7d)."),
    ] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """The self-healing dashboard: the six figures, the champion, the last pass, alerts."""
    import json
    import tempfile
    import time

    from mlmedic.core.clock import parse_duration, parse_time
    from mlmedic.store.events import EventStore
    from mlmedic.views.dashboard import build, serving_state

    try:
        refresh = parse_duration(every)
        window_days = parse_duration(window) / 86_400 if window else None
        start = parse_time(since, now=time.time()) if since else None
    except ValueError as exc:
        raise UsageError(f"--every/--window/--since: {exc}") from None
    if refresh < 0.5:
        raise UsageError(f"--every: '{every}' is too short; at least 0.5s")
    if window_days is not None and window_days <= 0:
        raise UsageError(f"--window: '{window}' is not a positive window; use e.g. 7d")
    project = open_project(project_dir)
    empty_dir = None
    if project.has_events:
        store = project.events
    else:  # read-only: an empty project shows "no data yet", and nothing is created
        empty_dir = tempfile.TemporaryDirectory()
        store = EventStore(Path(empty_dir.name) / "events.db")

    def board() -> Any:
        return build(
            store,
            now=time.time(),
            project=project.root.name,
            state_dir=project.state_dir,
            settings=project.settings,
            window_days=window_days,
            since=start,
            serving=serving_state(project.state_dir),
        )

    try:
        from mlmedic.views.terminal import dashboard_view

        if watch:
            from rich.live import Live

            with Live(dashboard_view(board()), console=console.out, screen=False) as live:
                while True:
                    time.sleep(refresh)
                    live.update(dashboard_view(board()))
        current = board()
        if html_out is not None:
            from mlmedic.views.page import page

            try:
                html_out.write_text(page(current), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--html {html_out}: cannot write it ({exc.strerror})") from None
        if as_json:
            console.out.print_json(json.dumps(current.to_dict(), default=str))
        else:
            console.out.print(dashboard_view(current))
        if html_out is not None and not as_json:
            console.out.print(
                f"wrote {html_out} (open it in a browser; no server needed)", soft_wrap=True
            )
    except KeyboardInterrupt:
        return
    finally:
        if empty_dir is not None:
            store.close()
            empty_dir.cleanup()


@app.command()
def logs(
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="Only this kind (data_fix, rollback, ...).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time, or a duration ago: 24h, 7d.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Show at most N (newest).", min=1)
    ] = 50,
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write the seed-style JSON logs into this directory."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events as one JSON document (oldest first).")
    ] = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """The action log: every check, fix, rollback, retrain and recovery, from the event store."""
    project = open_project(project_dir)
    from mlmedic.core.clock import parse_time
    from mlmedic.store.events import EventKind
    from mlmedic.views.terminal import print_events

    if kind is not None and kind not in {k.value for k in EventKind}:
        kinds = ", ".join(k.value for k in EventKind)
        raise UsageError(f"--kind: unknown event kind '{kind}' (one of: {kinds})")
    start = None
    if since is not None:
        try:
            start = parse_time(since, now=project.clock.now())
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    if export is not None and as_json:
        raise UsageError("--export writes files and --json prints: choose one")
    if not project.has_events:  # read-only: never create a local event store
        if export is not None:
            raise ProjectError(f"{project.root}: no events recorded yet; nothing to export")
        if as_json:
            print_json({"events": []})
            return
        console.out.print("no events")
        return
    if export is not None:
        names = {
            "recovery_log.json": Path(project.settings.self_healing.logging.recovery_log_path).name,
            "rollback_log.json": Path(project.settings.self_healing.logging.rollback_log_path).name,
            "retraining_log.json": Path(
                project.settings.self_healing.logging.retraining_log_path
            ).name,
        }
        counts = project.events.export(export, kind=kind, since=start, names=names)
        if not counts:
            raise UsageError(f"--kind {kind}: no exported log holds this kind of event")
        for name, count in counts.items():
            console.out.print(f"wrote {export / name} ({count} events)", soft_wrap=True)
        return
    events = project.events.query(kind=kind, since=start, limit=limit, newest_first=True)
    if as_json:
        print_json({"events": [event.to_dict() for event in reversed(events)]})
        return
    if not events:
        console.out.print("no events")
        return
    print_events(console.out, list(reversed(events)))


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--project-dir",
            "-C",
            help="Run in this project directory and keep it (default: a temporary one).",
        ),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", help="Rows in the defective batch.")] = 2000,
    html: Annotated[
        Path,
        typer.Option("--html", help="Where to write the dashboard page.", dir_okay=False),
    ] = Path("mlmedic-demo-dashboard.html"),
) -> None:
    """Run the self-healing loop on built-in data, end to end, and show what it did."""
    from mlmedic.cli.demo import run_demo

    run_demo(console.out, directory=directory, batch_rows=rows, html=html)
