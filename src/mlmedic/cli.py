"""The ``mlmedic`` command: parses, calls the library, prints, maps errors to exit codes.

Exit codes: 0 success; 1 the data checks failed; 2 a user error (bad file, bad config, wrong
option); 3 a store or service is unreachable (event store, MLflow); 4 another mlmedic operation
holds the project lock; 70 an internal error (a bug: please report it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mlmedic import __version__
from mlmedic.errors import DataFileError, MedicError, ProjectError, RegistryError, UsageError

if TYPE_CHECKING:
    from mlmedic.project import Project

# Only typer, rich and the error classes are imported up front: `mlmedic --help` and
# `--version` must not pay for pandas, scikit-learn or MLflow (each command imports what it uses).

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _MedicGroup(TyperGroup):
    """Turns every ``MedicError`` into one line on stderr and its exit code, for every command."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MedicError as exc:
            err.print(f"[red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="mlmedic",
    cls=_MedicGroup,
    help="A self-healing MLOps pipeline for tabular models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

ProjectDir = Annotated[
    Path,
    typer.Option(
        "--project-dir",
        "-C",
        help="Project directory (its config files and .mlmedic/ state).",
        envvar="MLMEDIC_PROJECT_DIR",
        file_okay=False,
    ),
]
Reference = Annotated[
    str | None,
    typer.Option("--reference", "-r", help="Learn the data contract from this table (or URL)."),
]
ContractFile = Annotated[
    Path | None,
    typer.Option("--contract", help="Use a saved data contract (JSON).", dir_okay=False),
]
Target = Annotated[
    str | None,
    typer.Option("--target", "-t", help="Target column (rows without it are quarantined)."),
]

AsJson = Annotated[
    bool, typer.Option("--json", help="Print the outcome as one JSON document (nothing else).")
]


def _plain(console: Console) -> Callable[[str], None]:
    """A ``say`` for narration lines: printed as they are (brackets in them, as in an interval
    [0.81, 0.86] or an evidence list, are text, not Rich markup)."""
    return lambda line: console.print(line, soft_wrap=True, markup=False, highlight=False)


@contextlib.contextmanager
def _progress(console: Console, start: str) -> Any:
    """A ``say`` for long work. On a terminal, a live status line under the narration shows the
    step under way and the time since it began (training, registering, a replay's windows are
    never silent); piped or redirected, only the narration lines themselves."""
    say = _plain(console)
    if not console.is_terminal:
        yield say
        return
    import time

    from rich.markup import escape

    began = [time.monotonic()]
    current = [start]

    def text() -> str:
        return f"{current[0]} [dim]({time.monotonic() - began[0]:.0f} s)[/]"

    with console.status(text(), spinner="dots") as status:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(1.0):
                status.update(text())

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()

        def narrate(line: str) -> None:
            say(line)
            current[0] = escape(line.strip()[:80]) or current[0]
            began[0] = time.monotonic()  # the time shown is the step's
            status.update(text())

        try:
            yield narrate
        finally:
            stop.set()
            ticker.join(timeout=2)


def _open(project_dir: Path, *, create: bool = False) -> Project:
    """The project, with its configuration read now: every command validates it up front.
    Only commands that set a project up (``init``, ``demo``) may create its directory."""
    if not create and not Path(project_dir).is_dir():
        raise ProjectError(
            f"{project_dir}: no such project directory (create it, or run 'mlmedic init' there)"
        )
    from mlmedic.project import Project

    project = Project(project_dir, on_wait=_plain(err))
    _OPENED.append(project)  # closed when the command ends (connections to a shared store)
    _ = project.settings
    return project


_OPENED: list[Any] = []


def _print_json(document: Any) -> None:
    """One JSON document on stdout and nothing else (for scripts: ``--json``)."""
    import json

    from mlmedic.events import finite

    text = json.dumps(finite(document), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


def _close_opened() -> None:
    while _OPENED:
        with contextlib.suppress(Exception):
            _OPENED.pop().close()


def _version(value: bool) -> None:
    if value:
        out.print(f"mlmedic {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project-dir",
            "-C",
            help="Project directory, for every command (also accepted after the command).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """A self-healing MLOps pipeline for tabular models."""
    if project_dir is not None:  # the commands' own --project-dir reads this as its default
        os.environ["MLMEDIC_PROJECT_DIR"] = str(project_dir)


@app.command()
def init(
    project_dir: ProjectDir = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write self_healing_config.json and monitoring_config.json with their defaults."""
    from mlmedic.config import write_default_configs

    for path in write_default_configs(project_dir, force=force):
        out.print(f"wrote {path}")


@app.command("check-data")
def check_data(
    data: Annotated[str, typer.Argument(help="The table to check: a file, folder or URL.")],
    reference: Reference = None,
    contract: ContractFile = None,
    target: Target = None,
    save_contract: Annotated[
        Path | None, typer.Option("--save-contract", help="Also save the contract used (JSON).")
    ] = None,
    as_json: AsJson = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stage 1: validate DATA against its contract. Exit 0 if every check passes, 1 if not."""
    project = _open(project_dir)
    from mlmedic.data.stage import check_file
    from mlmedic.render import print_report

    with _progress(err if as_json else out, f"reading and checking {data}"):
        result = check_file(
            data,
            reference=reference,
            contract=contract,
            target=target,
            config=project.settings.self_healing.data_quality,
            events=project.events,
            save_contract=save_contract,
        )
    if as_json:
        _print_json({"data": data, **result.first_report.to_dict()})
    else:
        print_report(out, result.first_report)
    if not result.passed:
        if not as_json:
            out.print(
                f"Run 'mlmedic fix-data {data} -o FIXED' to repair it, or correct the source."
            )
        raise typer.Exit(1)


@app.command("fix-data")
def fix_data(
    data: Annotated[str, typer.Argument(help="The table to repair: a file, folder or URL.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Repaired file (.csv or .parquet).", dir_okay=False),
    ],
    reference: Reference = None,
    contract: ContractFile = None,
    target: Target = None,
    as_json: AsJson = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stage 1: repair DATA into OUTPUT, quarantine what cannot be repaired, re-check.

    Writes OUTPUT, OUTPUT's .quarantine file and .audit.json beside it; DATA is never modified.
    Exit 0 only if the repaired data passes every check.
    """
    project = _open(project_dir)
    from mlmedic.data.stage import fix_file
    from mlmedic.render import print_repair, print_report

    with _progress(err if as_json else out, f"reading and repairing {data}"):
        result, paths = fix_file(
            data,
            output,
            reference=reference,
            contract=contract,
            target=target,
            config=project.settings.self_healing.data_quality,
            events=project.events,
        )
    if as_json:
        _print_json(
            {
                "data": data,
                "passed": result.passed,
                "before": result.first_report.to_dict(),
                "repair": (
                    {"rows": result.repair.accounting(), "rules": result.repair.audit()["rules"]}
                    if result.repair is not None
                    else None
                ),
                "after": result.final_report.to_dict(),
                "written": {
                    "data": str(paths.data),
                    "quarantine": str(paths.quarantine),
                    "audit": str(paths.audit),
                },
            }
        )
        if not result.passed:
            raise typer.Exit(1)
        return
    print_report(out, result.first_report, title="Checks before repair")
    if result.repair is not None:
        print_repair(out, result.repair)
        print_report(out, result.final_report, title="Checks after repair")
    out.print(f"wrote {paths.data}, {paths.quarantine.name}, {paths.audit.name}")
    if not result.passed:
        out.print("[red]The repaired data still fails its checks[/]; see the report above.")
        raise typer.Exit(1)


@app.command()
def run(
    data: Annotated[str, typer.Argument(help="Training data: a file, folder or URL.")],
    target: Target = None,
    trainer: Annotated[
        str | None,
        typer.Option("--trainer", help="Your trainer as package.module:function."),
    ] = None,
    reference: Reference = None,
    contract: ContractFile = None,
    as_json: AsJson = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stages 1-3: fix the data, back up, train, register, gate, deploy or roll back.

    Exit 0 when the candidate is deployed, 1 when the gate rejects it (the champion stays).
    """
    from mlmedic.pipeline import run_pipeline

    project = _open(project_dir)
    with _progress(err if as_json else out, f"reading {data}") as say:
        result = run_pipeline(  # with --json the narration goes to stderr
            project,
            data,
            target=target,
            trainer=trainer,
            reference=reference,
            contract=contract,
            say=say,
        )
    if as_json:
        stage = result.data
        _print_json(
            {
                "data": data,
                "deployed": result.deployed,
                "candidate": result.candidate,
                "champion_before": result.champion_before,
                "champion_after": result.champion_after,
                "gate": (
                    {**result.decision.to_dict(), "summary": result.decision.summary()}
                    if result.decision is not None
                    else None
                ),
                "data_checks": {
                    "passed": stage.passed,
                    "before": stage.first_report.summary(),
                    "after": stage.final_report.summary(),
                    "repair": stage.repair.accounting() if stage.repair is not None else None,
                },
                "timings": result.timings,
            }
        )
    if not result.deployed:
        raise typer.Exit(1)


@app.command()
def rollback(
    to: Annotated[
        int | None, typer.Option("--to", help="Roll back to this version (default: previous).")
    ] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Move the champion back to the previous version (or to --to VERSION)."""
    project = _open(project_dir)
    registry = project.registry
    done = registry.rollback(to, reason="manual rollback (mlmedic rollback)")
    out.print(
        f"rolled back {registry.model_name}: champion v{done.from_version} -> v{done.to_version}"
    )
    if done.offline:
        out.print(
            f"[yellow]MLflow at {registry.tracking_uri} is unreachable:[/] served from the local "
            f"backup {registry.backup_dir / f'v{done.to_version}'}; the registry's aliases will "
            "follow the next time it is reachable",
            soft_wrap=True,
        )


@app.command()
def models(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the versions as one JSON document.")
    ] = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """The registered versions: status, aliases and holdout metrics."""
    import dataclasses

    project = _open(project_dir)
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (project.state_dir / "mlflow.db").exists():
        from mlmedic.registry import default_model_name

        name = project.settings.self_healing.model_training.model_name
        if as_json:
            _print_json({"model": name or default_model_name(project.root), "versions": []})
            return
        out.print(
            f"no versions of '{name or default_model_name(project.root)}' yet; run 'mlmedic run'"
        )
        return  # read-only: never create a registry (or an event store) just to say so
    versions = project.registry.versions()
    if as_json:
        _print_json(
            {
                "model": project.registry.model_name,
                "versions": [dataclasses.asdict(info) for info in versions],
            }
        )
        return
    if not versions:
        out.print(f"no versions of '{project.registry.model_name}' yet; run 'mlmedic run'")
        return
    for info in versions:
        aliases = f" @{', @'.join(info.aliases)}" if info.aliases else ""
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(info.metrics.items()))
        reason = f" — {info.reason}" if info.status == "rejected" else ""
        out.print(f"v{info.version} {info.status}{aliases}: {metrics}{reason}", soft_wrap=True)


@app.command()
def adopt(
    version: Annotated[int, typer.Argument(help="The version registered outside mlmedic.", min=1)],
    reference: Annotated[
        str,
        typer.Option(
            "--reference", "-r", help="Data that describes the version's inputs (file or URL)."
        ),
    ],
    target: Target = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Adopt a version registered outside mlmedic: its baseline from REFERENCE, so it can be
    served and monitored (its skops types are shown and trusted)."""
    from mlmedic.adopt import adopt as adopt_version

    project = _open(project_dir)
    with _progress(out, f"adopting v{version}: reading {reference}"):
        done = adopt_version(project, version, reference, target=target)
    say = _plain(out)
    say(
        f"adopted v{done.version}: baseline from {done.reference} "
        f"({len(done.features)} features); metrics on the reference: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(done.metrics.items()))
    )
    say(
        f"trusting {len(done.trusted_types)} skops type(s) to load it: "
        + (", ".join(done.trusted_types) or "none beyond skops' own")
    )
    if done.champion:
        say("it is @champion: servers follow it at their next poll")


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

    /predict, /feedback and /metrics require a bearer token when MLMEDIC_API_TOKEN is set;
    /admin/* require MLMEDIC_ADMIN_TOKEN. /health and /ready stay open for probes.
    """
    from mlmedic.serving.app import is_loopback
    from mlmedic.serving.supervisor import Supervisor

    project = _open(project_dir)
    settings = project.settings.self_healing
    bind = host or settings.serving.host
    if not is_loopback(bind) and not os.environ.get("MLMEDIC_API_TOKEN"):
        err.print(
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
        out.print(
            f"serving {project.root.name} at http://{running.host}:{running.port} "
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
    project = _open(project_dir)
    result = recover_once(
        url,
        command,
        path=path,
        attempts=project.settings.self_healing.service_recovery.max_recovery_attempts,
        delay_seconds=project.settings.self_healing.service_recovery.recovery_delay_seconds,
        alert_on_failure=project.settings.self_healing.service_recovery.alert_on_failure,
        events=project.events,
        say=_plain(err),
    )
    out.print(result.message, soft_wrap=True)
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
    from mlmedic.labels import label_key
    from mlmedic.logstore import FeedbackLog

    project = _open(project_dir)
    from mlmedic.data.io import read_table

    frame = read_table(labels)
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise DataFileError(labels, f"missing column(s) {', '.join(missing)}")
    rows, unusable = [], 0
    for request_id, value in zip(frame["request_id"], frame["label"], strict=True):
        key = label_key(value)
        if key is None or request_id is None or str(request_id).strip() == "":
            unusable += 1
            continue
        rows.append({"request_id": str(request_id), "label": key})
    if not rows:
        raise DataFileError(labels, "no row has both a request_id and a label")
    written = FeedbackLog(project.log_location("feedback")).write(rows)
    out.print(
        f"recorded {written:,} label(s)"
        + (f"; {unusable:,} row(s) without a request id or a label left out" if unusable else "")
    )


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
    from mlmedic.clock import parse_duration
    from mlmedic.monitor import Monitor

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
    project = _open(project_dir)
    if dask is not None and batch is not None:
        raise UsageError("--dask profiles the prediction log; --batch reads one file here")
    console = err if as_json else out  # with --json the narration goes to stderr
    sink = [_plain(console)]

    def say(line: str) -> None:
        sink[0](line)

    runner = Monitor(project, reference_data=reference, say=say, dask_scheduler=dask)

    def one_pass(start: str, work: Callable[[], Any]) -> Any:
        with _progress(console, start) as narrate:
            sink[0] = narrate
            try:
                return work()
            finally:
                sink[0] = _plain(console)

    def report(result: Any) -> None:  # what was done is narrated as it happens
        if as_json:
            _print_json({"pass": True, **result.to_dict()})

    production = project.settings.self_healing.monitoring.production_data_path
    if batch is None and every is None and not once and production:
        folder = Path(production) if Path(production).is_absolute() else project.root / production
        if folder.exists():  # the design's drop folder of production data: one pass over it
            batch = str(folder)
            say(f"one pass over monitoring.production_data_path: {folder}")
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
                _print_json({"pass": False, "why": "another monitor has this interval's pass"})
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
    out.print("monitoring the prediction log; Ctrl-C to stop")
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
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write the timeline and summary as JSON here ('-': on stdout, and nothing else).",
            dir_okay=False,
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
    from mlmedic.clock import parse_duration
    from mlmedic.replay import replay as run_replay

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
    to_stdout = json_out is not None and str(json_out) == "-"
    with _progress(err if to_stdout else out, f"replaying {history}") as narrate:
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
    from mlmedic.render import print_replay

    if to_stdout:
        _print_json(result.to_dict())
    else:
        print_replay(out, result)
    if json_out is not None and not to_stdout:
        import json

        try:
            json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--json {json_out}: cannot write it ({exc.strerror})") from None
        out.print(f"wrote {json_out}", soft_wrap=True)
    if html_out is not None:
        from mlmedic.page import replay_page

        try:
            html_out.write_text(replay_page(result), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--html {html_out}: cannot write it ({exc.strerror})") from None
        (err if to_stdout else out).print(f"wrote {html_out}", soft_wrap=True)


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
        float, typer.Option("--every", help="Seconds between refreshes with --watch.", min=0.5)
    ] = 5.0,
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

    from mlmedic.clock import parse_duration, parse_time
    from mlmedic.dashboard import build, serving_state
    from mlmedic.events import EventStore

    try:
        window_days = parse_duration(window) / 86_400 if window else None
        start = parse_time(since, now=time.time()) if since else None
    except ValueError as exc:
        raise UsageError(f"--window/--since: {exc}") from None
    if window_days is not None and window_days <= 0:
        raise UsageError(f"--window: '{window}' is not a positive window; use e.g. 7d")
    project = _open(project_dir)
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
        from mlmedic.render import dashboard_view

        if watch:
            from rich.live import Live

            with Live(dashboard_view(board()), console=out, screen=False) as live:
                while True:
                    time.sleep(every)
                    live.update(dashboard_view(board()))
        current = board()
        if html_out is not None:
            from mlmedic.page import page

            try:
                html_out.write_text(page(current), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--html {html_out}: cannot write it ({exc.strerror})") from None
        if as_json:
            out.print_json(json.dumps(current.to_dict(), default=str))
        else:
            out.print(dashboard_view(current))
        if html_out is not None and not as_json:
            out.print(f"wrote {html_out} (open it in a browser; no server needed)", soft_wrap=True)
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
    project = _open(project_dir)
    from mlmedic.clock import parse_time
    from mlmedic.events import EventKind
    from mlmedic.render import print_events

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
            _print_json({"events": []})
            return
        out.print("no events")
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
            out.print(f"wrote {export / name} ({count} events)", soft_wrap=True)
        return
    events = project.events.query(kind=kind, since=start, limit=limit, newest_first=True)
    if as_json:
        _print_json({"events": [event.to_dict() for event in reversed(events)]})
        return
    if not events:
        out.print("no events")
        return
    print_events(out, list(reversed(events)))


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
    from mlmedic.demo import run_demo

    run_demo(out, directory=directory, batch_rows=rows, html=html)


def _usage_error(exc: Exception) -> bool:
    """A wrong option, argument or command (Typer's click errors, told by their interface: they
    carry ``format_message`` and ``exit_code``): say it in one line. True if it was one."""
    if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
        return False
    if type(exc).__name__ == "NoArgsIsHelpError":
        return True  # the help is already on the screen
    names: list[str] = []
    context = getattr(exc, "ctx", None)
    while context is not None and getattr(context, "parent", None) is not None:
        names.insert(0, context.info_name)
        context = context.parent
    command = " ".join(["mlmedic", *names])
    err.print(f"[red]error:[/] {exc.format_message()} (see '{command} --help')", soft_wrap=True)
    return True


def main() -> None:
    """Console entry point. User errors are handled per command; anything else is a bug."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if _usage_error(exc):
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("MLMEDIC_DEBUG"):
            raise
        err.print(
            f"[red]internal error:[/] {type(exc).__name__}: {exc} "
            "(set MLMEDIC_DEBUG=1 for the traceback, and please report it)",
            soft_wrap=True,
        )
        sys.exit(70)
    finally:
        _close_opened()
    sys.exit(code if isinstance(code, int) else 0)
