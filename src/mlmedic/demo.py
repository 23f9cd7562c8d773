"""``mlmedic demo``: the self-healing loop on built-in data, narrated.

Stage 1: a clean reference table and a defective production batch are generated; the batch is
checked against the contract learned from the reference, repaired, quarantined where it cannot be
repaired, and checked again. Stages 2-3: a model is trained on the reference plus the repaired
batch and deployed as v1 (registered in the project's embedded MLflow); then a candidate trained on
label-shuffled data is refused by the gate and the pipeline rolls back. The action log is shown
and exported. Later stages extend this script.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.rule import Rule

from mlmedic.config import write_default_configs
from mlmedic.data.io import read_table, write_table
from mlmedic.data.stage import fix_file
from mlmedic.datasets import TARGET, Defects, inject_defects, make_churn
from mlmedic.pipeline import run_pipeline
from mlmedic.project import Project
from mlmedic.render import print_events, print_repair, print_report

DEMO_DEFECTS = Defects(
    missing_rate=0.03,
    outlier_rate=0.01,
    duplicate_rate=0.02,
    bad_type_rate=0.01,
    unseen_category_rate=0.01,
    missing_target_rate=0.01,
)


def run_demo(console: Console, *, directory: Path | None = None, batch_rows: int = 2000) -> bool:
    """Run the demo in ``directory`` (kept) or a temporary directory (removed); True if healed."""
    keep = directory is not None
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="mlmedic-"))
    root.mkdir(parents=True, exist_ok=True)
    project = Project(root)
    try:
        healed = _stage_one(console, project, batch_rows)
        deployed = _stages_two_three(console, project)
        _action_log(console, project)
        return healed and deployed
    finally:
        project.close()
        if keep:
            console.print(f"\nproject kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _stage_one(console: Console, project: Project, batch_rows: int) -> bool:
    root = project.root
    write_default_configs(root, force=True)
    console.print(Rule("[bold]mlmedic demo[/] — stage 1: data checks with auto-fix"))
    reference = make_churn(5000, seed=7)
    batch = inject_defects(make_churn(batch_rows, seed=8), DEMO_DEFECTS, seed=9, target=TARGET)
    write_table(reference, root / "reference.csv")
    write_table(batch, root / "batch.csv")
    console.print(
        f"generated reference.csv ({len(reference):,} clean rows) and batch.csv "
        f"({len(batch):,} rows with missing values, outliers, duplicates, wrongly typed "
        "values, unseen categories and missing labels) in a temporary project"
    )
    input_bytes = (root / "batch.csv").read_bytes()
    result, paths = fix_file(
        root / "batch.csv",
        root / "fixed.parquet",
        reference=root / "reference.csv",
        target=TARGET,
        config=project.settings.self_healing.data_quality,
        events=project.events,
    )
    print_report(console, result.first_report, title="1. Checks on batch.csv")
    if result.repair is not None:
        console.print()
        print_repair(console, result.repair)
    console.print()
    print_report(console, result.final_report, title="2. Checks after repair")
    unchanged = (root / "batch.csv").read_bytes() == input_bytes
    console.print(
        f"wrote {paths.data.name}, {paths.quarantine.name} and {paths.audit.name}; "
        f"batch.csv {'untouched' if unchanged else 'MODIFIED (bug)'}"
    )
    healed = result.passed and unchanged
    verdict = "[green]healed[/]" if healed else "[red]NOT healed[/]"
    console.print(Rule(f"stage 1 {verdict}"))
    return healed


def _stages_two_three(console: Console, project: Project) -> bool:
    """Train and deploy v1; then a candidate trained on label-shuffled data, which the gate
    refuses, and the pipeline rolls back from."""
    root = project.root
    console.print(Rule("[bold]stages 2-3[/] — training with auto-backup, gate, auto-rollback"))
    say = lambda line: console.print(line, soft_wrap=True)  # noqa: E731
    training = pd.concat([read_table(root / "reference.csv"), read_table(root / "fixed.parquet")])
    write_table(training, root / "training.parquet")
    console.print(
        "[bold]4. mlmedic run training.parquet -t churned -r reference.csv[/]"
        " (the reference plus the repaired batch)"
    )
    reference = root / "reference.csv"
    good = run_pipeline(
        project, root / "training.parquet", target=TARGET, reference=reference, say=say
    )
    shuffled = training.copy()
    shuffled[TARGET] = shuffled[TARGET].sample(frac=1.0, random_state=0).to_numpy()
    write_table(shuffled, root / "shuffled.parquet")
    console.print()
    console.print(
        "[bold]5. mlmedic run shuffled.parquet -t churned -r reference.csv[/]"
        " (the same rows, labels shuffled)"
    )
    bad = run_pipeline(
        project, root / "shuffled.parquet", target=TARGET, reference=reference, say=say
    )
    console.print()
    console.print("[bold]6. mlmedic models[/]")
    for info in project.registry.versions():
        aliases = f" @{', @'.join(info.aliases)}" if info.aliases else ""
        metrics = info.metrics
        reason = f" — {info.reason}" if info.reason else ""
        console.print(
            f"v{info.version} {info.status}{aliases}: accuracy {metrics.get('accuracy', 0):.3f}, "
            f"f1 {metrics.get('f1', 0):.3f}{reason}",
            soft_wrap=True,
        )
    ok = good.deployed and not bad.deployed and bad.champion_after == good.candidate
    verdict = "[green]good model deployed, bad one refused[/]" if ok else "[red]unexpected[/]"
    console.print(Rule(f"stages 2-3 {verdict}"))
    return ok


def _action_log(console: Console, project: Project) -> None:
    console.print("[bold]7. Action log[/] (mlmedic logs)")
    print_events(console, project.events.query())
    counts = project.events.export(project.root / "logs")
    console.print(
        "exported " + ", ".join(f"{name} ({n})" for name, n in counts.items()) + " to logs/"
    )
