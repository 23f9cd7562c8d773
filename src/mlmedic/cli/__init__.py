"""The ``mlmedic`` command: parses, calls the library, prints, maps errors to exit codes.

Exit codes: 0 success; 1 the data checks failed; 2 a user error (bad file, bad config, wrong
option); 3 a store or service is unreachable (event store, MLflow); 4 another mlmedic operation
holds the project lock; 70 an internal error (a bug: please report it).

A package, a module per command group (``data``, ``models``, ``service``, ``monitoring``,
``reports``); ``common`` holds the app and what the commands share.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mlmedic import __version__
from mlmedic.cli import console
from mlmedic.cli.common import (
    app,
    close_opened,
)

# Only typer, rich and the error classes are imported up front: `mlmedic --help` and
# `--version` must not pay for pandas, scikit-learn or MLflow (each command imports what it uses).


def _version(value: bool) -> None:
    if value:
        console.out.print(f"mlmedic {__version__}")
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
    console.err.print(
        f"[red]error:[/] {escape(exc.format_message())} (see '{command} --help')",
        soft_wrap=True,
    )
    return True


def main() -> None:
    """Console entry point. User errors are handled per command; anything else is a bug."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        console.err.print("interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if _usage_error(exc):
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("MLMEDIC_DEBUG"):
            raise
        console.err.print(
            f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
            "(set MLMEDIC_DEBUG=1 for the traceback, and please report it)",
            soft_wrap=True,
        )
        sys.exit(70)
    finally:
        close_opened()
    sys.exit(code if isinstance(code, int) else 0)


# the commands register themselves on ``app`` when their modules are imported, in the order
# `mlmedic --help` lists them
# isort: off
from mlmedic.cli import data  # noqa: E402
from mlmedic.cli import models  # noqa: E402
from mlmedic.cli import releases  # noqa: E402
from mlmedic.cli import service  # noqa: E402
from mlmedic.cli import monitoring  # noqa: E402
from mlmedic.cli import reports  # noqa: E402

# isort: on

__all__ = ["app", "data", "main", "models", "monitoring", "releases", "reports", "service"]
