"""Stage 6: ``serve``, ``recover``, ``feedback``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mlmedic.cli import console
from mlmedic.cli.common import ProjectDir, app, open_project, plain
from mlmedic.core.errors import DataFileError, RegistryError


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port (default 8000; 0: any free).", min=0, max=65535),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (1-64).", min=1, max=64)
    ] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stage 6: serve the champion under a supervisor that health-checks and recovers it.

    With MLMEDIC_API_TOKEN set, every path but the probes /health and /ready
    (serving.open_paths) requires it as a bearer token; /admin/* require MLMEDIC_ADMIN_TOKEN.
    """
    from mlmedic.serving.app import is_loopback
    from mlmedic.serving.supervisor import Supervisor

    project = open_project(project_dir)
    settings = project.settings.self_healing
    bind = host or settings.serving.host
    if not is_loopback(bind) and not os.environ.get("MLMEDIC_API_TOKEN"):
        console.err.print(
            f"[yellow]warning:[/] binding {bind} makes /predict, /feedback and /metrics "
            "reachable from other machines without credentials; set MLMEDIC_API_TOKEN",
            soft_wrap=True,
        )
    if project.registry.read_pointer() is None and project.registry.champion() is None:
        raise RegistryError(
            f"model '{project.registry.model_name}' has no champion to serve yet: "
            "run 'mlmedic run DATA --target COLUMN' first"
        )
    project.close()
    supervisor = Supervisor(
        project.root,
        serving=settings.serving,
        recovery=settings.service_recovery,
        host=host,
        port=port,
        workers=workers,
        notifications=settings.notifications,
        healing_enabled=settings.self_healing.enabled,
        retention_days=settings.logging.retention_days,
        events_target=project.events_target,
    )

    def announce(running: Supervisor) -> None:
        console.out.print(
            f"serving {project.registry.model_name} (project {project.root}) at "
            f"http://{running.host}:{running.port} "
            f"({running.workers} worker(s)); Ctrl-C to stop",
            soft_wrap=True,
        )

    supervisor.run_forever(on_ready=announce)


@app.command()
def recover(
    url: Annotated[
        str, typer.Option("--url", help="Base URL (http or https) of the service to check.")
    ],
    command: Annotated[
        str, typer.Option("--command", help="Shell command that restarts the service.")
    ],
    path: Annotated[str, typer.Option("--path", help="Health path to probe.")] = "/health",
    project_dir: ProjectDir = Path("."),
) -> None:
    """One-shot check of a service mlmedic does not supervise; restart it if it is unhealthy."""
    from mlmedic.serving.recover import check_url, recover_once

    check_url(url)
    project = open_project(project_dir)
    result = recover_once(
        url,
        command,
        path=path,
        attempts=project.settings.self_healing.service_recovery.max_recovery_attempts,
        delay_seconds=project.settings.self_healing.service_recovery.recovery_delay_seconds,
        alert_on_failure=project.settings.self_healing.service_recovery.alert_on_failure,
        events=project.events,
        say=plain(console.err),
    )
    console.out.print(result.message, soft_wrap=True)
    if not result.healthy:
        raise typer.Exit(1)


@app.command()
def feedback(
    labels: Annotated[
        str, typer.Argument(help="A table with request_id and label (a file or URL).")
    ],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Record true labels for served predictions, by request id."""
    from mlmedic.data.io import read_table
    from mlmedic.store.logstore import FeedbackLog, record_feedback

    project = open_project(project_dir)
    frame = read_table(labels)
    try:
        written, unusable = record_feedback(FeedbackLog(project.log_location("feedback")), frame)
    except ValueError as exc:
        raise DataFileError(labels, str(exc)) from None
    console.out.print(
        f"recorded {written:,} label(s)"
        + (f"; {unusable:,} row(s) without a request id or a label left out" if unusable else "")
    )
