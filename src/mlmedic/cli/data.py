"""Stage 1 commands: ``init``, ``check-data``, ``fix-data``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlmedic.cli import console
from mlmedic.cli.common import (
    AsJson,
    ContractFile,
    ProjectDir,
    Reference,
    Target,
    app,
    open_project,
    print_json,
    progress,
)


@app.command()
def init(
    project_dir: ProjectDir = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write self_healing_config.json and monitoring_config.json with their defaults."""
    from mlmedic.core.config import write_default_configs

    for path in write_default_configs(project_dir, force=force):
        console.out.print(f"wrote {path}")


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
    project = open_project(project_dir)
    from mlmedic.data.stage import check_file
    from mlmedic.views.terminal import print_report

    with progress(console.err if as_json else console.out, f"reading and checking {data}"):
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
        print_json({"data": data, **result.first_report.to_dict()})
    else:
        print_report(console.out, result.first_report)
    if not result.passed:
        if not as_json:
            console.out.print(
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
    project = open_project(project_dir)
    from mlmedic.data.stage import fix_file
    from mlmedic.views.terminal import print_repair, print_report

    with progress(console.err if as_json else console.out, f"reading and repairing {data}"):
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
        print_json(
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
    print_report(console.out, result.first_report, title="Checks before repair")
    if result.repair is not None:
        print_repair(console.out, result.repair)
        print_report(console.out, result.final_report, title="Checks after repair")
    console.out.print(f"wrote {paths.data}, {paths.quarantine.name}, {paths.audit.name}")
    if not result.passed:
        console.out.print("[red]The repaired data still fails its checks[/]; see the report above.")
        raise typer.Exit(1)
