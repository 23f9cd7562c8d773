"""What every command shares: the Typer app and its error handling (one line and the exit code
for every ``MedicError``), the common options, opening a project, live progress, JSON output."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from mlmedic.cli import console
from mlmedic.core.errors import MedicError, ProjectError

if TYPE_CHECKING:
    from mlmedic.model.project import Project


class _MedicGroup(TyperGroup):
    """Turns every ``MedicError`` into one line on stderr and its exit code, for every command."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MedicError as exc:
            # the message is the user's text, not markup: '[lightgbm]' must print as written
            console.err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
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


def plain(console: Console) -> Callable[[str], None]:
    """A ``say`` for narration lines: printed as they are (brackets in them, as in an interval
    [0.81, 0.86] or an evidence list, are text, not Rich markup)."""
    return lambda line: console.print(line, soft_wrap=True, markup=False, highlight=False)


@contextlib.contextmanager
def progress(console: Console, start: str) -> Any:
    """A ``say`` for long work. On a terminal, a live status line under the narration shows the
    step under way and the time since it began (training, registering, a replay's windows are
    never silent); piped or redirected, only the narration lines themselves."""
    say = plain(console)
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


_OPENED: list[Project] = []  # projects a command opened, closed when it ends


def open_project(project_dir: Path, *, create: bool = False) -> Project:
    """The project, with its configuration read now: every command validates it up front.
    Only commands that set a project up (``init``, ``demo``) may create its directory."""
    if not create and not Path(project_dir).is_dir():
        raise ProjectError(
            f"{project_dir}: no such project directory (create it, or run 'mlmedic init' there)"
        )
    from mlmedic.model.project import Project

    project = Project(project_dir, on_wait=plain(console.err))
    _OPENED.append(project)  # closed when the command ends (connections to a shared store)
    _ = project.settings
    return project


def print_json(document: Any) -> None:
    """One JSON document on stdout and nothing else (for scripts: ``--json``)."""
    import json

    from mlmedic.store.events import finite

    text = json.dumps(finite(document), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


def close_opened() -> None:
    while _OPENED:
        with contextlib.suppress(Exception):
            _OPENED.pop().close()
