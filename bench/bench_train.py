"""Benchmark: `mlmedic run` on 100,000 rows x 20 features, end to end and by stage.

    python bench/bench_train.py [--rows 100000]

1. End to end: `mlmedic run train.parquet --target churned` as a fresh process (imports, MLflow's
   SQLite store creation and all), in a new project; then a second run, which also backs up the
   champion and scores it on the candidate's holdout.
2. By stage, in-process (`run_pipeline` timings): check+fix, backup, train, register, gate, deploy.
3. Registry overhead (log + register + alias), and a rollback (alias moves + their events), timed
   on their own.

Targets on this 2-core machine: end to end <= 30 s; registry overhead <= 3 s; rollback <= 0.5 s.
Figures are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlmedic.datasets import TARGET, make_churn
from mlmedic.pipeline import run_pipeline
from mlmedic.project import Project


def trained_project(folder: Path, rows: int = 20_000) -> tuple[Path, dict[str, object], str]:
    """A project in ``folder``/p whose v1 (the default pipeline) learned ``make_training(rows)``:
    (its root, one record of features as plain values, the model's name)."""
    root = folder / "p"
    root.mkdir()
    frame = make_training(rows, seed=1)
    project = Project(root)
    run_pipeline(project, frame, target=TARGET, say=lambda _: None)
    name = project.registry.model_name
    project.close()
    row = frame.drop(columns=[TARGET, "signup_at"], errors="ignore").iloc[0].to_dict()
    return root, {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}, name


def make_training(rows: int, seed: int) -> pd.DataFrame:
    """The churn table widened to 20 features with 11 extra numeric signals and noise."""
    frame = make_churn(rows, seed=seed)
    rng = np.random.default_rng(seed)
    for i in range(11):
        base = frame["monthly_charges"] if i % 2 else frame["tenure_months"]
        frame[f"extra_{i:02d}"] = np.round(
            base * rng.uniform(0.5, 1.5) + rng.normal(0, 10, rows), 3
        )
    columns = [c for c in frame.columns if c != TARGET] + [TARGET]
    return frame[columns]


def timed_cli(project_dir: Path, data: Path) -> float:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mlmedic", "run", str(data), "--target", TARGET],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(done.stdout + done.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        first, second = make_training(args.rows, 1), make_training(args.rows, 2)
        features = first.shape[1] - 2  # minus the time column and the target
        first.to_parquet(root / "first.parquet")
        second.to_parquet(root / "second.parquet")
        print(f"data: {args.rows:,} rows x {features} features (+ a time column and the target)")

        cli_dir = root / "cli-project"
        cli_dir.mkdir()
        cold = timed_cli(cli_dir, root / "first.parquet")
        warm = timed_cli(cli_dir, root / "second.parquet")
        print(f"mlmedic run, end to end, new project (fresh process):   {cold:6.2f} s")
        print(f"mlmedic run, end to end, with a champion to back up:    {warm:6.2f} s")

        lib_dir = root / "lib-project"
        lib_dir.mkdir()
        project = Project(lib_dir)
        run_pipeline(project, root / "first.parquet", target=TARGET)
        result = run_pipeline(project, root / "second.parquet", target=TARGET)
        print("by stage (in-process, second run):")
        for stage, seconds in result.timings.items():
            print(f"  {stage:<14} {seconds:6.2f} s")
        registry_overhead = result.timings["register"] + result.timings.get("deploy", 0.0)
        print(f"registry overhead (log + register + alias moves):      {registry_overhead:6.2f} s")

        start = time.perf_counter()
        before, after, _ = project.registry.rollback(reason="benchmark")
        rollback = time.perf_counter() - start
        print(f"rollback v{before} -> v{after} (alias moves + events):         {rollback:6.3f} s")
        project.close()


if __name__ == "__main__":
    main()
