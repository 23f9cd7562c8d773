"""``mlmedic demo``: the self-healing loop on built-in data, narrated.

Stage 1 today: a clean reference table and a defective production batch are generated; the
batch is checked against the contract learned from the reference, repaired, quarantined where it
cannot be repaired, and checked again; the action log is shown and exported. Later stages extend
this script.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from mlmedic.config import write_default_configs
from mlmedic.data.io import write_table
from mlmedic.data.stage import fix_file
from mlmedic.datasets import TARGET, Defects, inject_defects, make_churn
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
        return _stage_one(console, project, batch_rows)
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
    console.print()
    console.print("[bold]3. Action log[/] (mlmedic logs)")
    print_events(console, project.events.query())
    counts = project.events.export(root / "logs")
    console.print(
        "exported " + ", ".join(f"{name} ({n})" for name, n in counts.items()) + " to logs/"
    )
    healed = result.passed and unchanged
    verdict = "[green]healed[/]" if healed else "[red]NOT healed[/]"
    console.print(Rule(f"stage 1 {verdict}"))
    return healed
