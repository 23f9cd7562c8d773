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

    python bench/bench_train.py --trainers [--rows 100000] [--repeats 3]

4. The built-in trainers side by side (#23): the default pipeline, LightGBM and XGBoost, each
   trained ``--repeats`` times on the same rows and judged on the same holdout (mlmedic's split,
   same seed) — the churn table (classification) and NannyML's synthetic car prices (regression,
   60,000 rows, read from the files inside the ``nannyml`` wheel when it is installed).
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

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project


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


def _car_prices() -> pd.DataFrame | None:
    import importlib.util

    spec = importlib.util.find_spec("nannyml")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)), "datasets", "data")
    frame = pd.read_csv(folder / "regression_synthetic_reference.csv")
    return frame.drop(columns=["id", "y_pred", "timestamp"])


def compare_trainers(rows: int, repeats: int) -> None:
    """Each built-in trainer on the same rows and holdout: median seconds to train, and the
    holdout's score (the same every repetition: seeded)."""
    from mlmedic.data.contract import DataContract
    from mlmedic.model.training import train

    tables = [("churn (classification)", make_training(rows, 1), TARGET, "classification")]
    prices = _car_prices()
    if prices is not None:
        tables.append(("car prices (regression)", prices, "y_true", "regression"))
    print(f"| table | trainer | train s (median of {repeats}) | holdout |")
    print("|---|---|---|---|")
    for name, frame, target, task in tables:
        frame = frame.drop(columns=["signup_at"], errors="ignore")
        contract = DataContract(target=target, task=task).fit(frame)
        for trainer in (None, "lightgbm", "xgboost"):
            seconds, metrics = [], {}
            for _ in range(repeats):
                result = train(frame, contract, trainer=trainer)
                seconds.append(result.seconds)
                metrics = result.metrics
            shown = (
                f"RMSE {metrics['rmse']:.1f}, MAE {metrics['mae']:.1f}, R² {metrics['r2']:.4f}"
                if task == "regression"
                else f"accuracy {metrics['accuracy']:.4f}, ROC AUC {metrics['roc_auc']:.4f}"
            )
            label = trainer or "default pipeline"
            print(f"| {name} | {label} | {float(np.median(seconds)):.2f} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trainers", action="store_true", help="compare the built-in trainers")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.trainers:
        compare_trainers(args.rows, args.repeats)
        return
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
