"""Stages 2-3 and the registry: ``run``, ``rollback``, ``models``, ``adopt``."""

from __future__ import annotations

import os
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
    plain,
    print_json,
    progress,
)


@app.command()
def run(
    data: Annotated[str, typer.Argument(help="Training data: a file, folder or URL.")],
    target: Target = None,
    trainer: Annotated[
        str | None,
        typer.Option("--trainer", help="Your trainer as package.module:function."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="classification or regression (default: model_training.task, by default told "
            "from the target: numbers with many distinct values are a regression).",
        ),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            help="direct, shadow or canary: how a candidate that passes the gate reaches "
            "traffic (default: deployment.release).",
        ),
    ] = None,
    reference: Reference = None,
    contract: ContractFile = None,
    as_json: AsJson = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stages 1-3: fix the data, back up, train, register, gate, deploy or roll back.

    Exit 0 when the candidate passes the gate (deployed, or released as a shadow or canary),
    1 when the gate rejects it (the champion stays).
    """
    from mlmedic.heal.pipeline import run_pipeline
    from mlmedic.heal.releases.states import Mode
    from mlmedic.model.training import load_trainer

    if release is not None:
        Mode.parse(release)  # refused before any work
    project = open_project(project_dir)
    load_trainer(trainer or project.settings.self_healing.model_training.trainer)  # before work
    with progress(console.err if as_json else console.out, f"reading {data}") as say:
        result = run_pipeline(  # with --json the narration goes to stderr
            project,
            data,
            target=target,
            trainer=trainer,
            reference=reference,
            contract=contract,
            say=say,
            task=task,
            release=release,
        )
    if as_json:
        stage = result.data
        print_json(
            {
                "data": data,
                "task": result.task,
                "deployed": result.deployed,
                "release": result.release,
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
    project = open_project(project_dir)
    registry = project.registry
    done = registry.rollback(to, reason="manual rollback (mlmedic rollback)")
    console.out.print(
        f"rolled back {registry.model_name}: champion v{done.from_version} -> v{done.to_version}"
    )
    if done.offline:
        console.out.print(
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

    project = open_project(project_dir)
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (project.state_dir / "mlflow.db").exists():
        from mlmedic.model.registry import default_model_name

        name = project.settings.self_healing.model_training.model_name
        if as_json:
            print_json({"model": name or default_model_name(project.root), "versions": []})
            return
        console.out.print(
            f"no versions of '{name or default_model_name(project.root)}' yet; run 'mlmedic run'"
        )
        return  # read-only: never create a registry (or an event store) just to say so
    versions = project.registry.versions()
    if as_json:
        print_json(
            {
                "model": project.registry.model_name,
                "versions": [dataclasses.asdict(info) for info in versions],
            }
        )
        return
    if not versions:
        console.out.print(f"no versions of '{project.registry.model_name}' yet; run 'mlmedic run'")
        return
    for info in versions:
        aliases = f" @{', @'.join(info.aliases)}" if info.aliases else ""
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(info.metrics.items()))
        reason = f" — {info.reason}" if info.status == "rejected" else ""
        console.out.print(
            f"v{info.version} {info.status}{aliases}: {metrics}{reason}", soft_wrap=True
        )


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
    from mlmedic.heal.adopt import adopt as adopt_version

    project = open_project(project_dir)
    with progress(console.out, f"adopting v{version}: reading {reference}"):
        done = adopt_version(project, version, reference, target=target)
    say = plain(console.out)
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
